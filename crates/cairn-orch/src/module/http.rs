//! `http`: wait until a URL answers with the wanted status (Ansible's
//! `uri`/`wait_for`, Salt's `http.query` and
//! `http.wait_for_successful_query`). The host asks, with its own `curl`,
//! so what is checked is what the host can reach. Never `changed`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::Outcome;
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub url: String,
    pub status: u16,
    pub method: String,
    /// Per request, in seconds.
    pub timeout: u64,
    /// Attempts in all (at least 1).
    pub retries: u64,
    /// Seconds between attempts.
    pub delay: u64,
}

/// The last answer: its status (0: no answer) and how many attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub status: u16,
    pub attempts: u64,
}

impl Http {
    pub fn new(args: &Args) -> Result<Http, ModuleError> {
        let mut r = ArgReader::new("http", args);
        let url = r.required(&["url", "name"])?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(r.bad(format!("`url` must be http:// or https://, not `{url}`")));
        }
        let wait = r.bool(&["wait"])?.unwrap_or(false);
        let status = r.u64(&["status", "status_code"])?.unwrap_or(200);
        if !(100..=599).contains(&status) {
            return Err(r.bad(format!("`status` must be an HTTP status, not {status}")));
        }
        let method = r
            .str(&["method"])?
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(r.bad(format!("`method` must be a word like GET, not `{method}`")));
        }
        // Salt's wait_for_successful_query keeps asking; a plain query asks once.
        let (def_retries, def_delay) = if wait { (30, 2) } else { (1, 1) };
        let h = Http {
            url,
            status: status as u16,
            method,
            timeout: r.u64(&["timeout"])?.unwrap_or(10).max(1),
            retries: r
                .u64(&["retries", "attempts"])?
                .unwrap_or(def_retries)
                .max(1),
            delay: r.u64(&["delay", "request_interval"])?.unwrap_or(def_delay),
        };
        r.finish()?;
        Ok(h)
    }

    pub fn script(&self) -> String {
        format!(
            r#"command -v curl >/dev/null || {{ echo 'curl is not installed' >&2; exit 127; }}
i=0
while :; do
  i=$((i + 1))
  code=$(curl -s -o /dev/null -w '%{{http_code}}' {method} --max-time {timeout} {url})
  if [ "$code" = {want} ] || [ "$i" -ge {retries} ]; then break; fi
  sleep {delay}
done
echo "status=$code"
echo "attempts=$i"
"#,
            // -X HEAD would wait for a body that never comes; -I does not.
            method = if self.method == "HEAD" {
                "-I".to_string()
            } else {
                format!("-X {}", self.method)
            },
            timeout = self.timeout,
            url = quote(&self.url),
            want = self.status,
            retries = self.retries,
            delay = self.delay,
        )
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        Reading {
            status: m
                .get("status")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            attempts: m.get("attempts").and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }

    /// Whether the answer is the one wanted, or why not.
    pub fn judge(&self, r: &Reading) -> Result<String, String> {
        if r.status == self.status {
            Ok(format!(
                "{} answered {} (attempt {})",
                self.url, r.status, r.attempts
            ))
        } else if r.status == 0 {
            Err(format!(
                "{} did not answer after {} attempt(s)",
                self.url, r.attempts
            ))
        } else {
            Err(format!(
                "{} answered {}, not {}, after {} attempt(s)",
                self.url, r.status, self.status, r.attempts
            ))
        }
    }
}

#[async_trait]
impl Module for Http {
    fn name(&self) -> &str {
        "http"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        // The whole wait is one script: it must outlive every attempt.
        let budget = Duration::from_secs(self.retries * (self.timeout + self.delay) + 30);
        let out = host::run(host, ctx, self.script(), None, Some(budget)).await?;
        if !out.success() {
            return Err(host::failed("http", &format!("asking {}", self.url), &out));
        }
        let reading = Http::parse(&out.stdout_str());
        let data =
            json!({ "url": self.url, "status": reading.status, "attempts": reading.attempts });
        match self.judge(&reading) {
            Ok(summary) => Ok(Outcome {
                summary,
                data,
                ..Outcome::default()
            }),
            Err(message) => Err(ModuleError::Failed {
                module: "http".into(),
                message,
                stdout: out.stdout_str(),
                stderr: out.stderr_str(),
                rc: out.status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::module::testkit::{args, assert_sh, run};

    #[test]
    fn judging_a_made_up_answer() {
        let h = Http::new(&args(&[("url", "http://x/"), ("status", "204")])).unwrap();
        assert!(
            h.judge(&Reading {
                status: 204,
                attempts: 3
            })
            .is_ok()
        );
        let e = h
            .judge(&Reading {
                status: 500,
                attempts: 1,
            })
            .unwrap_err();
        assert!(e.contains("500, not 204"), "{e}");
        let e = h
            .judge(&Reading {
                status: 0,
                attempts: 2,
            })
            .unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert_eq!(
            Http::parse("status=000\nattempts=2\n"),
            Reading {
                status: 0,
                attempts: 2
            }
        );
        assert_sh(&h.script());
        assert!(Http::new(&args(&[("url", "ftp://x")])).is_err());
        let w = Http::new(&args(&[("url", "http://x/"), ("wait", "true")])).unwrap();
        assert_eq!(w.retries, 30);
    }

    /// Answers 503 to the first `failures` requests, then 200.
    async fn server(failures: usize) -> (String, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", l.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if n < failures {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (url, task, seen)
    }

    #[tokio::test]
    async fn waits_until_the_url_answers() {
        let (url, task, seen) = server(2).await;
        let o = run(
            "http.wait_for_successful_query",
            &[("url", &url), ("delay", "0")],
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(!o.changed);
        assert_eq!(o.data["status"], 200);
        assert_eq!(o.data["attempts"], 3);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        let once = run("http.query", &[("url", &url)], &Default::default())
            .await
            .unwrap();
        assert_eq!(once.data["attempts"], 1);
        task.abort();
    }

    #[tokio::test]
    async fn a_wrong_status_fails() {
        let (url, task, _) = server(100).await;
        let err = run(
            "http",
            &[("url", &url), ("retries", "2"), ("delay", "0")],
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("answered 503, not 200, after 2"),
            "{err}"
        );
        task.abort();
    }
}
