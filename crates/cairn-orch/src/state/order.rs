//! The order states run in on a host: Salt's `order: declared`.
//!
//! States are taken in file order; before a state runs, what it requires
//! (every requisite kind: `onchanges` and `onfail` need their targets'
//! results too) runs first, in the order the requisites are listed. So a
//! file with no requisites runs top to bottom, and a requisite pulls its
//! target forward only as far as needed, as Salt's recursive requisite
//! calls do.

use super::error::{StateError, StateErrorKind};
use super::render::Source;
use super::resolved::State;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    /// On the path being followed: meeting it again closes a cycle.
    Open,
    Done,
}

/// The run order, as indices into `states`.
pub(crate) fn order(sources: &[Source], states: &[State]) -> Result<Vec<usize>, StateError> {
    let mut marks = vec![Mark::New; states.len()];
    let mut out = Vec::with_capacity(states.len());
    // The path followed: each state with the requisite taken out of it.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..states.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Open;
        path.push((root, 0));
        // Iterative, so a long chain of requisites cannot overflow the stack.
        while let Some(&mut (at, ref mut next)) = path.last_mut() {
            let Some(req) = states[at].requisites.get(*next) else {
                marks[at] = Mark::Done;
                out.push(at);
                path.pop();
                continue;
            };
            *next += 1;
            match marks[req.index] {
                Mark::Done => {}
                Mark::New => {
                    marks[req.index] = Mark::Open;
                    path.push((req.index, 0));
                }
                Mark::Open => return Err(cycle(sources, states, &path, at, req.index)),
            }
        }
    }
    Ok(out)
}

/// The cycle closed by `from`'s requisite on `to`, which is on `path`.
fn cycle(
    sources: &[Source],
    states: &[State],
    path: &[(usize, usize)],
    from: usize,
    to: usize,
) -> StateError {
    let start = path.iter().position(|&(s, _)| s == to).unwrap_or(0);
    // Each member with the requisite (the one just taken) that leads on.
    let members: Vec<(usize, &super::resolved::Requisite)> = path[start..]
        .iter()
        .map(|&(s, next)| (s, &states[s].requisites[next - 1]))
        .collect();
    let (_, closing) = members[members.len() - 1];
    let closing_source = &sources[closing.file];
    if members.len() == 1 {
        return StateError::at(
            StateErrorKind::Cycle,
            format!("state `{}` requires itself", states[from].id),
            closing_source,
            closing.span.clone(),
            "a requisite on its own state",
        );
    }
    let mut names: Vec<&str> = members
        .iter()
        .map(|&(s, _)| states[s].id.as_str())
        .collect();
    names.push(&states[to].id);
    let mut err = StateError::at(
        StateErrorKind::Cycle,
        format!("requisite cycle: {}", names.join(" → ")),
        closing_source,
        closing.span.clone(),
        format!(
            "`{}` needs `{}`, which closes the cycle",
            states[from].id, states[to].id
        ),
    );
    for &(s, r) in &members[..members.len() - 1] {
        err = err.also(
            &sources[r.file],
            r.span.clone(),
            format!("`{}` needs `{}`", states[s].id, r.target),
        );
    }
    err.help("no state can run first; remove one of these requisites")
}
