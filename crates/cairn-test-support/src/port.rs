//! Ports for the servers a test starts.

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed
/// again, so a server started next can bind it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    l.local_addr().expect("a bound address").port()
}
