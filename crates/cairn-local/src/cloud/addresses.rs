//! Loopback addresses for servers, load balancers, databases and public
//! addresses. Linux routes all of 127.0.0.0/8 to `lo`, so each gets its own
//! address without root. A local cloud allocates from its own /16 block,
//! 127.P.0.0/16 (P = 42 unless chosen otherwise), away from the 127.0.0.x
//! addresses other programs use; two clouds on one machine use two blocks.

use std::net::Ipv4Addr;

pub const DEFAULT_POOL: u8 = 42;

/// The first free address of the pool 127.`pool`.0.0/16.
pub fn allocate(pool: u8, used: impl Iterator<Item = Ipv4Addr>) -> Option<Ipv4Addr> {
    let used: std::collections::HashSet<u32> = used.map(u32::from).collect();
    (u32::from(Ipv4Addr::new(127, pool, 0, 2))..=u32::from(Ipv4Addr::new(127, pool, 255, 254)))
        .filter(|a| a & 0xff != 0 && a & 0xff != 255)
        .find(|a| !used.contains(a))
        .map(Ipv4Addr::from)
}

/// Whether an address can be asked for: loopback, not the pool's edges.
pub fn valid_fixed(ip: Ipv4Addr) -> Result<(), String> {
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address: the local target gives servers addresses in 127.0.0.0/8"
        ));
    }
    if ip == Ipv4Addr::new(127, 0, 0, 1) {
        return Err(
            "127.0.0.1 is shared by every program on this machine; pick another 127.x.y.z".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_START: Ipv4Addr = Ipv4Addr::new(127, DEFAULT_POOL, 0, 2);

    #[test]
    fn allocation_skips_used_and_network_addresses() {
        assert_eq!(allocate(DEFAULT_POOL, std::iter::empty()), Some(POOL_START));
        assert_eq!(
            allocate(43, std::iter::empty()),
            Some(Ipv4Addr::new(127, 43, 0, 2))
        );
        let used = [POOL_START, Ipv4Addr::new(127, 42, 0, 3)];
        assert_eq!(
            allocate(DEFAULT_POOL, used.into_iter()),
            Some(Ipv4Addr::new(127, 42, 0, 4))
        );
        let mut all: Vec<Ipv4Addr> = (2..=254).map(|i| Ipv4Addr::new(127, 42, 0, i)).collect();
        all.push(Ipv4Addr::new(127, 42, 0, 1));
        assert_eq!(
            allocate(DEFAULT_POOL, all.into_iter()),
            Some(Ipv4Addr::new(127, 42, 1, 1))
        );
    }

    #[test]
    fn fixed_addresses_must_be_private_loopback() {
        assert!(valid_fixed(Ipv4Addr::new(127, 9, 9, 9)).is_ok());
        assert!(valid_fixed(Ipv4Addr::new(10, 0, 0, 1)).is_err());
        assert!(valid_fixed(Ipv4Addr::new(127, 0, 0, 1)).is_err());
    }
}
