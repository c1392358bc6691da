//! A loopback TCP relay in front of moto that keeps every byte each
//! connection carried, both ways: what the provider asked and what moto
//! answered, for tests about what is asked, not only what comes out.
//! Plain bytes (no HTTP parsing): the SDK's requests and moto's answers
//! follow one another on a connection, so a connection's bytes hold whole
//! requests (or answers) in order.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Bytes = Arc<Mutex<Vec<u8>>>;

#[derive(Default)]
struct Seen {
    /// Per connection: (asked, answered).
    connections: Vec<(Bytes, Bytes)>,
    /// Every socket, to close them all when the relay stops.
    sockets: Vec<TcpStream>,
}

pub struct Recorder {
    pub url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    accept: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Relays to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Recorder {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("moto's address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let accept = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let (asked, answered) = (Bytes::default(), Bytes::default());
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.connections.push((asked.clone(), answered.clone()));
                        seen.sockets.push(client.try_clone().unwrap());
                        seen.sockets.push(server.try_clone().unwrap());
                    }
                    relay(
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        asked,
                    );
                    relay(server, client, answered);
                }
            })
        };
        Recorder {
            url: format!("http://{addr}"),
            addr,
            stop,
            seen,
            accept: Some(accept),
        }
    }

    /// Each connection's requests, as text.
    pub fn asked(&self) -> Vec<String> {
        self.each(|(asked, _)| asked)
    }

    /// Each connection's answers, as text.
    pub fn answered(&self) -> Vec<String> {
        self.each(|(_, answered)| answered)
    }

    fn each(&self, pick: impl Fn(&(Bytes, Bytes)) -> &Bytes) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .connections
            .iter()
            .map(|c| String::from_utf8_lossy(&pick(c).lock().unwrap()).into_owned())
            .collect()
    }
}

/// Copies `from` to `to`, keeping a copy, until `from` ends.
fn relay(mut from: TcpStream, mut to: TcpStream, kept: Bytes) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the stop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Ends every relay thread: their reads return.
        for s in &self.seen.lock().unwrap().sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
