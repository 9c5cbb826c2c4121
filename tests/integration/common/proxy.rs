//! A TCP proxy on 127.0.0.1 for network-fault tests: it forwards, freezes (keeps every
//! connection open and reads what both sides send, but delivers nothing: a black hole that
//! neither closes nor resets, as a hung middlebox or a frozen pooler does) or resets (ends every
//! connection with an RST).
//!
//! ```text
//!   migval ──► 127.0.0.1:proxy ──► 127.0.0.1:server
//!               forward: bytes copied both ways
//!               freeze:  bytes read and dropped both ways, sockets stay open
//!               reset:   SO_LINGER 0 + close on both sides (RST)
//! ```
//!
//! It runs on a runtime of its own, ends every connection when dropped, and stops by itself
//! after [`MAX_LIFE`] whatever happens to the test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a proxy lives at most.
pub const MAX_LIFE: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Freeze,
    Reset,
}

pub struct Proxy {
    /// The port to connect to on 127.0.0.1.
    pub port: u16,
    mode: watch::Sender<Mode>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, forwarding.
    pub fn start(upstream: u16) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy on 127.0.0.1");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, watch_mode) = watch::channel(Mode::Forward);
        runtime.spawn(async move {
            let accept = async {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, watch_mode.clone()));
                }
            };
            let _ = tokio::time::timeout(MAX_LIFE, accept).await;
        });
        Proxy {
            port,
            mode,
            runtime: Some(runtime),
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The URL of `url` (a `postgres://...@127.0.0.1:PORT/...` URL) through this proxy.
    pub fn url(&self, url: &str, server_port: u16) -> String {
        url.replacen(
            &format!("127.0.0.1:{server_port}"),
            &format!("127.0.0.1:{}", self.port),
            1,
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn relay(mut client: TcpStream, mut server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    // Frozen, a side that closes is not passed on either: the other side sees nothing at all.
    let (mut client_open, mut server_open) = (true, true);
    let deadline = tokio::time::sleep(MAX_LIFE);
    tokio::pin!(deadline);
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Reset {
            // SO_LINGER 0: close() sends an RST instead of a FIN.
            #[allow(deprecated)]
            {
                let _ = client.set_linger(Some(Duration::ZERO));
                let _ = server.set_linger(Some(Duration::ZERO));
            }
            return;
        }
        let forward = current == Mode::Forward;
        if forward && !(client_open && server_open) {
            return;
        }
        tokio::select! {
            r = client.read(&mut up), if client_open => match r {
                Ok(0) | Err(_) => client_open = false,
                Ok(n) => if forward && server.write_all(&up[..n]).await.is_err() { return },
            },
            r = server.read(&mut down), if server_open => match r {
                Ok(0) | Err(_) => server_open = false,
                Ok(n) => if forward && client.write_all(&down[..n]).await.is_err() { return },
            },
            changed = mode.changed() => if changed.is_err() { return },
            () = &mut deadline => return,
        }
    }
}
