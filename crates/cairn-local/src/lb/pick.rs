//! Picking a backend: smooth weighted round robin, round robin and (weighted)
//! least connections, over the backends the caller says are usable. Pure
//! bookkeeping, so the sequences are tested without sockets.

use super::config::Algorithm;

/// Per-backend picking state, kept across picks (and across updates for a
/// backend that stays).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub weight: u32,
    /// Smooth weighted round robin's running score.
    current: i64,
}

impl Slot {
    pub fn new(weight: u32) -> Self {
        Self { weight, current: 0 }
    }
}

/// Picks among `slots[i]` for which `usable(i)` holds and the weight is not 0.
/// `next` is the round-robin cursor (also breaks least-connections ties so
/// that equal backends share the load); `load(i)` is backend `i`'s in-flight
/// count.
pub(super) fn pick(
    algorithm: Algorithm,
    slots: &mut [Slot],
    next: &mut usize,
    usable: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> usize,
) -> Option<usize> {
    let n = slots.len();
    if n == 0 {
        return None;
    }
    let eligible = |slots: &[Slot], i: usize| slots[i].weight > 0 && usable(i);
    match algorithm {
        Algorithm::WeightedRoundRobin => {
            // nginx's smooth weighted round robin: every usable backend gains
            // its weight, the highest score wins and pays the total back. A
            // backend that is not usable restarts from 0 when it returns, so
            // it does not arrive with a burst of saved-up turns.
            let mut total = 0i64;
            let mut best: Option<usize> = None;
            for i in 0..n {
                if !eligible(slots, i) {
                    slots[i].current = 0;
                    continue;
                }
                let w = i64::from(slots[i].weight);
                slots[i].current += w;
                total += w;
                if best.is_none_or(|b| slots[i].current > slots[b].current) {
                    best = Some(i);
                }
            }
            let b = best?;
            slots[b].current -= total;
            Some(b)
        }
        Algorithm::RoundRobin => {
            let start = *next % n;
            let i = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| eligible(slots, i))?;
            *next = i + 1;
            Some(i)
        }
        Algorithm::LeastConnections => {
            // Fewest in flight per unit of weight: compare a/wa with b/wb as
            // a*wb < b*wa. Scanning from the cursor spreads ties.
            let start = *next % n;
            let mut best: Option<(usize, u128, u128)> = None;
            for i in (0..n).map(|k| (start + k) % n) {
                if !eligible(slots, i) {
                    continue;
                }
                let (l, w) = (load(i) as u128, u128::from(slots[i].weight));
                if best.is_none_or(|(_, bl, bw)| l * bw < bl * w) {
                    best = Some((i, l, w));
                }
            }
            let (i, _, _) = best?;
            *next = i + 1;
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(alg: Algorithm, weights: &[u32], usable: &[bool], picks: usize) -> String {
        let mut slots: Vec<Slot> = weights.iter().map(|&w| Slot::new(w)).collect();
        let mut next = 0;
        (0..picks)
            .map(|_| {
                let i = pick(alg, &mut slots, &mut next, |i| usable[i], |_| 0).unwrap();
                (b'a' + i as u8) as char
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_matches_nginx() {
        // nginx's documented sequence for 5:1:1.
        assert_eq!(
            run(Algorithm::WeightedRoundRobin, &[5, 1, 1], &[true; 3], 7),
            "aabacaa"
        );
        // 3:1 is 3:1 in every window of 4, not just on average.
        let seq = run(Algorithm::WeightedRoundRobin, &[3, 1], &[true; 2], 400);
        for w in seq.as_bytes().windows(4) {
            assert_eq!(w.iter().filter(|&&c| c == b'a').count(), 3, "{seq}");
        }
    }

    #[test]
    fn unusable_and_zero_weight_backends_get_nothing() {
        let seq = run(
            Algorithm::WeightedRoundRobin,
            &[3, 1, 2],
            &[true, false, true],
            10,
        );
        assert_eq!(seq.matches('a').count(), 6);
        assert_eq!(seq.matches('c').count(), 4);
        assert_eq!(
            run(Algorithm::RoundRobin, &[1, 0, 1], &[true; 3], 4),
            "acac"
        );
        let mut slots = vec![Slot::new(1)];
        assert_eq!(
            pick(
                Algorithm::WeightedRoundRobin,
                &mut slots,
                &mut 0,
                |_| false,
                |_| 0
            ),
            None
        );
        assert_eq!(
            pick(Algorithm::RoundRobin, &mut [], &mut 0, |_| true, |_| 0),
            None
        );
    }

    #[test]
    fn round_robin_ignores_weights_and_skips_the_unusable() {
        assert_eq!(
            run(Algorithm::RoundRobin, &[5, 1, 1], &[true; 3], 6),
            "abcabc"
        );
        assert_eq!(
            run(Algorithm::RoundRobin, &[1, 1, 1], &[true, false, true], 4),
            "acac"
        );
    }

    #[test]
    fn least_connections_weighs_load_by_weight_and_spreads_ties() {
        let mut slots = vec![Slot::new(1), Slot::new(2), Slot::new(1)];
        let mut next = 0;
        let mut lc = |loads: [usize; 3]| {
            pick(
                Algorithm::LeastConnections,
                &mut slots,
                &mut next,
                |_| true,
                |i| loads[i],
            )
            .unwrap()
        };
        // b carries 1 per 2 units of weight: the lightest.
        assert_eq!(lc([1, 1, 3]), 1);
        let mut seen: Vec<usize> = (0..3).map(|_| lc([0, 0, 0])).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2], "ties rotate");
    }
}
