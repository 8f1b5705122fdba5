//! A TCP proxy in front of the real Redis that can stall replies and cut connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct Proxy {
    pub(crate) addr: String,
    stalled: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    pub(crate) async fn start(upstream: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (s, g) = (stalled.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let born = g.load(Ordering::SeqCst);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let g1 = g.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 16384];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) if g1.load(Ordering::SeqCst) == born => {
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => return,
                        }
                    }
                });
                let (s2, g2) = (s.clone(), g.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while s2.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        if g2.load(Ordering::SeqCst) != born || cw.write_all(&buf[..n]).await.is_err() {
                            return; // dropping the halves closes the client's connection
                        }
                    }
                });
            }
        });
        Proxy { addr, stalled, generation }
    }

    /// Holds back every reply while `on`.
    pub(crate) fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }

    /// Closes the connections open now (at their next byte).
    pub(crate) fn kill_connections(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}
