//! `certorder solver`: serves domain-validation files from a directory (the mounted ConfigMap of
//! [`super::http::config_map`]). `GET /.well-known/pki-validation/<file>` with `Host: <domain>`
//! answers the bytes of `<dir>/<domain>_<file>` exactly, as `text/plain`; anything else is a 404.
//! No directory listing, no path traversal: host and file names are checked character by
//! character before the file system is touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::http::{config_map_key, valid_file_name, valid_host};

/// The solver's routes, serving files from `dir`.
pub fn router(dir: PathBuf) -> Router {
    Router::new()
        .route("/.well-known/pki-validation/{file}", get(serve_file))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { not_found() })
        .with_state(Arc::new(dir))
}

/// What one client may hold of the solver: it answers a CA's few GETs, and a Pod reachable from
/// the internet must not be held open by idle or slow connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    pub connections: usize,
    /// Time to send the request head (request line and headers).
    pub header_read: std::time::Duration,
    /// Longest life of one connection.
    pub connection: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            header_read: std::time::Duration::from_secs(10),
            connection: std::time::Duration::from_secs(60),
        }
    }
}

/// Serves on `listener` until the process ends, within the default [`Limits`].
pub async fn serve(listener: tokio::net::TcpListener, dir: PathBuf) -> std::io::Result<()> {
    serve_with(listener, dir, Limits::default()).await
}

pub async fn serve_with(listener: tokio::net::TcpListener, dir: PathBuf, limits: Limits) -> std::io::Result<()> {
    let app = router(dir);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection, connection).await;
        });
    }
}

/// `certorder solver --dir DIR --listen ADDR`: binds, prints `listening on <addr>` (the port
/// chosen when ADDR asks for port 0), and serves.
pub async fn run(dir: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory: mount the validation ConfigMap there", dir.display());
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    tracing::info!(%addr, dir = %dir.display(), "serving domain-validation files");
    serve(listener, dir).await?;
    Ok(())
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found\n").into_response()
}

/// The host a request names, without port or trailing dot, lowercased; `None` when it is not a
/// plain host name.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::HOST)?.to_str().ok()?;
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    valid_host(&host).then_some(host)
}

/// The file for a host, when both names are safe to use as a path component.
pub fn file_for(dir: &Path, host: &str, file: &str) -> Option<PathBuf> {
    if !valid_host(host) || !valid_file_name(file) {
        return None;
    }
    Some(dir.join(config_map_key(host, file)))
}

async fn serve_file(State(dir): State<Arc<PathBuf>>, UrlPath(file): UrlPath<String>, headers: HeaderMap) -> Response {
    let Some(host) = request_host(&headers) else {
        return not_found();
    };
    let Some(path) = file_for(&dir, &host, &file) else {
        return not_found();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain"), (header::CACHE_CONTROL, "no-store")], bytes)
                .into_response()
        }
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends the request line and Host exactly as given (no client normalises the path).
    async fn get(dir: &Path, host: &str, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, dir.to_path_buf()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {uri} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        server.abort();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let code: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let ct = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string());
        (StatusCode::from_u16(code).unwrap(), ct, body)
    }

    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("example.com_fileauth.txt"), b"2017041811335abc").unwrap();
        std::fs::write(dir.path().join("www.example.com_fileauth.txt"), b"other-value").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"do not serve").unwrap();
        dir
    }

    #[tokio::test]
    async fn serves_each_hosts_content_byte_exact_as_text_plain() {
        let dir = files();
        let (status, ct, body) = get(dir.path(), "example.com", "/.well-known/pki-validation/fileauth.txt").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some("text/plain"));
        assert_eq!(body, b"2017041811335abc", "no newline added");
        let (_, _, body) = get(dir.path(), "WWW.Example.com:80", "/.well-known/pki-validation/fileauth.txt").await;
        assert_eq!(body, b"other-value");
        let (_, _, body) = get(dir.path(), "example.com.", "/.well-known/pki-validation/fileauth.txt").await;
        assert_eq!(body, b"2017041811335abc");
    }

    #[tokio::test]
    async fn unknown_hosts_files_and_paths_are_404() {
        let dir = files();
        for (host, uri) in [
            ("shop.example.com", "/.well-known/pki-validation/fileauth.txt"),
            ("example.com", "/.well-known/pki-validation/other.txt"),
            ("example.com", "/.well-known/pki-validation/"),
            ("example.com", "/fileauth.txt"),
            ("example.com", "/"),
            ("example.com", "/.well-known/acme-challenge/fileauth.txt"),
        ] {
            let (status, _, body) = get(dir.path(), host, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{host} {uri}");
            assert_eq!(body, b"not found\n");
        }
    }

    #[tokio::test]
    async fn traversal_attempts_are_refused() {
        let dir = files();
        let outside = dir.path().parent().unwrap().join("outside_fileauth.txt");
        let _ = std::fs::write(&outside, b"outside");
        for (host, uri) in [
            ("example.com", "/.well-known/pki-validation/..%2Fsecret.txt"),
            ("example.com", "/.well-known/pki-validation/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
            ("example.com", "/.well-known/pki-validation/../../secret.txt"),
            ("example.com", "/.well-known/pki-validation/.hidden"),
            ("..", "/.well-known/pki-validation/secret.txt"),
            ("../outside", "/.well-known/pki-validation/fileauth.txt"),
            ("example.com/..", "/.well-known/pki-validation/fileauth.txt"),
            ("example.com", "/.well-known/pki-validation/fileauth.txt%00"),
        ] {
            let (status, _, body) = get(dir.path(), host, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{host} {uri}");
            assert_ne!(body, b"do not serve");
            assert_ne!(body, b"outside");
        }
        let _ = std::fs::remove_file(outside);
        assert!(file_for(dir.path(), "example.com", "../x").is_none());
        assert!(file_for(dir.path(), "a/b", "x").is_none());
    }

    /// Whether the server closed the connection within `within` (reads 0 bytes or fails).
    async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(within, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn slow_or_idle_clients_are_cut_off_and_connections_are_limited() {
        let dir = files();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 2,
            header_read: std::time::Duration::from_millis(300),
            connection: std::time::Duration::from_secs(5),
        };
        let server = tokio::spawn(serve_with(listener, dir.path().to_path_buf(), limits));
        // Two clients that send half a request head and stop.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /.well-known/pki-validation/fileauth.txt HTTP/1.1\r\nHost: exa").await.unwrap();
            slow.push(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // A third is turned away at once: the two hold every slot.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut third, std::time::Duration::from_millis(200)).await,
            "a third connection is refused"
        );
        // The slow ones are cut off once the header timeout passes.
        for s in &mut slow {
            assert!(closed_within(s, std::time::Duration::from_secs(3)).await, "a slow client is cut off");
        }
        // Then a real request is served.
        server.abort();
        let (status, _, body) = get(dir.path(), "example.com", "/.well-known/pki-validation/fileauth.txt").await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, b"2017041811335abc".as_slice()));
    }
}
