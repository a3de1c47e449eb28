//! The nginx balancer's admin client: pushes routes to the admin server the generated
//! file declares on a unix socket (`balancer_socket`) and reads them back. The server
//! is `balancer.lua`, written by the agent beside the file (see
//! `disco::render::nginx::nginx_balancer`).
//!
//! A push is one `PUT` of `app <name>` … `end` blocks (an entry each: see
//! [`BalancerEntries`]), `delete <name>` lines and a `generation <revision>` line; a
//! read is one `GET` answering the same form for every entry. HTTP/1.0, so that nginx
//! answers without chunks and closes the connection.

use std::path::Path;
use std::time::Duration;

use disco::render::nginx::{BalancerEntries, BALANCER_ADMIN_PATH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The balancer module, with `@ROUTES@` for the routes file nginx reads after a restart.
const MODULE: &str = include_str!("balancer.lua");

/// The module's text for a target whose routes file is `routes`.
pub fn module(routes: &Path) -> String {
    MODULE.replace("@ROUTES@", &routes.display().to_string())
}

/// What the balancer holds: the generation of the last push and the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// None: nothing pushed since nginx started, and no routes file loaded.
    pub generation: Option<i64>,
    pub entries: BalancerEntries,
}

/// The body of a push: the entries of `next` that differ from `last` (all without
/// `last`), a delete for each app of `last` that `next` no longer has, and `generation`.
/// Also the number of apps it sets or deletes.
pub fn body(
    last: Option<&BalancerEntries>,
    next: &BalancerEntries,
    generation: i64,
) -> (String, usize) {
    let mut out = String::new();
    let mut count = 0;
    for (app, entry) in next {
        if last.and_then(|l| l.get(app)) != Some(entry) {
            out.push_str(&format!("app {app}{entry}\nend\n"));
            count += 1;
        }
    }
    for app in last.into_iter().flat_map(|l| l.keys()) {
        if !next.contains_key(app) {
            out.push_str(&format!("delete {app}\n"));
            count += 1;
        }
    }
    out.push_str(&format!("generation {generation}\n"));
    (out, count)
}

/// Parses a read: a `generation` line, then blocks.
pub fn parse(text: &str) -> Result<Held, String> {
    let mut lines = text.split('\n');
    let generation = match lines.next().and_then(|l| l.strip_prefix("generation ")) {
        Some("none") => None,
        Some(n) => Some(
            n.parse()
                .map_err(|_| format!("the balancer answered a bad generation {n:?}"))?,
        ),
        None => return Err(format!("the balancer answered {:?}", first_line(text))),
    };
    let mut entries = BalancerEntries::new();
    let mut current: Option<(String, String)> = None;
    for line in lines {
        match &mut current {
            None if line.is_empty() => {}
            None => {
                let app = line
                    .strip_prefix("app ")
                    .ok_or_else(|| format!("the balancer answered {line:?} outside a block"))?;
                current = Some((app.to_string(), String::new()));
            }
            Some(_) if line == "end" => {
                let (app, entry) = current.take().expect("a block");
                entries.insert(app, entry);
            }
            Some((_, entry)) => {
                entry.push('\n');
                entry.push_str(line);
            }
        }
    }
    if let Some((app, _)) = current {
        return Err(format!(
            "the balancer's answer ends inside the block of {app}"
        ));
    }
    Ok(Held {
        generation,
        entries,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Sends `body` to the balancer.
pub async fn push(socket: &Path, body: &str, timeout: Duration) -> Result<(), String> {
    let answer = request(socket, "PUT", body, timeout).await?;
    if answer.starts_with("ok ") {
        Ok(())
    } else {
        Err(format!(
            "the balancer refused the push: {}",
            first_line(&answer)
        ))
    }
}

/// Reads what the balancer holds.
pub async fn read(socket: &Path, timeout: Duration) -> Result<Held, String> {
    parse(&request(socket, "GET", "", timeout).await?)
}

/// One HTTP/1.0 exchange with the admin server; the body of a 200 answer.
async fn request(
    socket: &Path,
    method: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        let head = format!(
            "{method} {BALANCER_ADMIN_PATH} HTTP/1.0\r\nHost: disco-balancer\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{}: no answer within {timeout:?}", socket.display()))?
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{}: not an HTTP answer", socket.display()))?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!(
            "{}: {method} answered {}: {}",
            socket.display(),
            first_line(head),
            first_line(body)
        ));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(&str, &str)]) -> BalancerEntries {
        list.iter()
            .map(|(a, e)| (a.to_string(), e.to_string()))
            .collect()
    }

    #[test]
    fn a_push_carries_what_changed_and_deletes_what_went() {
        let last = entries(&[
            ("a", "\nrouted 127.0.0.1:1 100"),
            ("b", "\nrouted 127.0.0.1:2 100"),
        ]);
        let next = entries(&[("a", "\nrouted 127.0.0.1:1 100"), ("c", "")]);
        let (body, count) = body(Some(&last), &next, 7);
        assert_eq!(body, "app c\nend\ndelete b\ngeneration 7\n");
        assert_eq!(count, 2);
        let (all, count) = super::body(None, &next, 8);
        assert_eq!(
            all,
            "app a\nrouted 127.0.0.1:1 100\nend\napp c\nend\ngeneration 8\n"
        );
        assert_eq!(count, 2);
    }

    #[test]
    fn a_read_parses_back_what_a_push_wrote() {
        let next = entries(&[
            (
                "a",
                "\nrouted 127.0.0.1:1 100\ndark [::1]:2 50\nheader X-Canary yes",
            ),
            ("empty", ""),
        ]);
        let (pushed, _) = body(None, &next, 3);
        // The server answers the generation, then the blocks.
        let text = format!(
            "generation 3\n{}",
            pushed.trim_end_matches("generation 3\n")
        );
        assert_eq!(
            parse(&text).unwrap(),
            Held {
                generation: Some(3),
                entries: next
            }
        );
        assert_eq!(parse("generation none\n").unwrap().generation, None);
        assert!(parse("<html>").is_err());
        assert!(parse("generation 1\napp a\nrouted x 1\n").is_err());
    }
}
