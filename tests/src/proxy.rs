//! A proxy between the binary and moto, for what moto gets wrong or cannot do. moto 5
//! echoes a task's container `cpu` as a JSON number, which the Rust SDK rejects (ECS sends
//! a string), so no DescribeTasks/RunTask answer from moto parses: the proxy turns those
//! numbers into strings. It can also answer the first N requests of an operation with
//! ThrottlingException, as ECR does under load.

use crate::moto::Moto;

/// A running proxy on a free 127.0.0.1 port; it serves until the test process exits.
pub struct AwsProxy {
    port: u16,
}

impl AwsProxy {
    /// A proxy that only fixes moto's task shapes.
    pub fn start(moto: &Moto) -> Self {
        Self::start_throttling(moto, "", 0)
    }

    /// Throttle the first `times` requests whose `x-amz-target` ends with `.{operation}`.
    pub fn start_throttling(moto: &Moto, operation: &str, times: usize) -> Self {
        let throttle = std::sync::Arc::new(std::sync::Mutex::new((
            format!(".{}", operation.to_lowercase()),
            times,
        )));
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = moto.port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    let _ = Self::serve(conn, upstream, &throttle);
                });
            }
        });
        Self { port }
    }

    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `moto.env()` with the endpoint pointed at the proxy.
    pub fn env(&self, moto: &Moto) -> Vec<(String, String)> {
        moto.env_with_endpoint(&self.endpoint())
    }

    fn serve(
        mut client: std::net::TcpStream,
        upstream: u16,
        throttle: &std::sync::Mutex<(String, usize)>,
    ) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let mut request = Vec::new();
        let mut buf = [0u8; 65536];
        let header_end = loop {
            let n = client.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            request.extend_from_slice(&buf[..n]);
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..header_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while request.len() < header_end + length {
            let n = client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let target = head
            .lines()
            .find_map(|l| l.strip_prefix("x-amz-target:"))
            .map(str::trim);
        {
            let mut t = throttle.lock().expect("throttle lock");
            if t.1 > 0 && target.is_some_and(|x| x.ends_with(t.0.as_str())) {
                t.1 -= 1;
                let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                return client.write_all(reply.as_bytes());
            }
        }
        let mut moto = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
        moto.write_all(&request)?;
        let mut response = Vec::new();
        moto.read_to_end(&mut response)?;
        let Some(split) = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
        else {
            return client.write_all(&response);
        };
        let body = &response[split..];
        let fixed = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|mut v| {
                let tasks = v.get_mut("tasks")?.as_array_mut()?;
                for task in tasks {
                    for c in task
                        .get_mut("containers")
                        .and_then(|c| c.as_array_mut())
                        .into_iter()
                        .flatten()
                    {
                        for key in ["cpu", "memory", "memoryReservation"] {
                            if let Some(n) =
                                c.get(key).filter(|x| x.is_number()).map(|x| x.to_string())
                            {
                                c[key] = serde_json::Value::String(n);
                            }
                        }
                    }
                }
                serde_json::to_vec(&v).ok()
            });
        match fixed {
            None => client.write_all(&response),
            Some(new_body) => {
                let head = String::from_utf8_lossy(&response[..split]);
                let mut out = String::new();
                for line in head.split("\r\n").filter(|l| !l.is_empty()) {
                    if line.to_lowercase().starts_with("content-length:") {
                        out.push_str(&format!("Content-Length: {}\r\n", new_body.len()));
                    } else {
                        out.push_str(line);
                        out.push_str("\r\n");
                    }
                }
                out.push_str("\r\n");
                client.write_all(out.as_bytes())?;
                client.write_all(&new_body)
            }
        }
    }
}
