//! A real BIND 9 (`named` from Debian's `bind9` package) started on loopback for a test: zones
//! in a temporary directory, updatable with one TSIG key (hmac-sha256), queried by the tests with
//! `dig`-like questions through [`Bind::txt`]. Stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Where `named` is looked for when it is not on PATH (Debian puts it in /usr/sbin).
const NAMED_PATHS: &[&str] = &["/usr/sbin/named", "/usr/local/sbin/named", "/sbin/named"];

/// One zone and its starting records (zone-file lines relative to the origin, e.g.
/// `_dnsauth.www 60 IN TXT "someone-else"`).
pub struct Zone<'a> {
    pub name: &'a str,
    pub records: &'a [&'a str],
    /// Whether the TSIG key may update it.
    pub updatable: bool,
}

pub struct Bind {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    pub key_name: String,
    /// The TSIG secret, base64 (as tsig-keygen prints it).
    pub key_secret: String,
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named_binary() -> PathBuf {
    if let Some(found) = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("named")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(NAMED_PATHS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
    {
        return found;
    }
    panic!(
        "BIND 9's `named` is not installed, and the RFC 2136 tests run the real BIND: run .ci/run (it installs it), or `apt-get install bind9`"
    );
}

fn free_port() -> u16 {
    // A port free for both TCP and UDP.
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Bind {
    /// Starts `named` in the foreground with `zones`, and waits until it answers for each.
    pub async fn start(zones: &[Zone<'_>]) -> Bind {
        let named = named_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        // named may drop to the `bind` user; let it read and write its directory.
        let _ = std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let port = free_port();
        let key_name = "certorder-test".to_string();
        let key_secret = {
            use base64::Engine;
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let d = dir.path().display();
        let mut conf = format!(
            "key \"{key_name}\" {{ algorithm hmac-sha256; secret \"{key_secret}\"; }};\n\
             options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  notify no;\n  session-keyfile \"{d}/session.key\";\n}};\n\
             controls {{ }};\n"
        );
        for zone in zones {
            let file = format!("{}.zone", zone.name);
            let mut text = format!(
                "$ORIGIN {0}.\n$TTL 60\n@ IN SOA ns1.{0}. hostmaster.{0}. 1 60 60 600 60\n@ IN NS ns1.{0}.\nns1 IN A 127.0.0.1\n",
                zone.name
            );
            for r in zone.records {
                text.push_str(r);
                text.push('\n');
            }
            write(&dir.path().join(&file), &text);
            let update =
                if zone.updatable { format!("allow-update {{ key \"{key_name}\"; }};") } else { String::new() };
            conf.push_str(&format!("zone \"{}\" {{ type primary; file \"{d}/{file}\"; {update} }};\n", zone.name));
        }
        let conf_path = dir.path().join("named.conf");
        write(&conf_path, &conf);
        let log = std::fs::File::create(dir.path().join("named.log")).expect("log file");
        let mut command = Command::new(&named);
        command.arg("-g").arg("-c").arg(&conf_path).arg("-n").arg("1");
        // As root, named would switch to the `bind` user only with -u; stay as the invoking user.
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", named.display()));
        let mut bind = Bind { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), _dir: dir, key_name, key_secret };
        for zone in zones {
            bind.wait_for(zone.name).await;
        }
        bind
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("named.log")).unwrap_or_default()
    }

    async fn wait_for(&mut self, zone: &str) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("named exited ({status}) before serving {zone}:\n{}", self.log());
            }
            if let Ok(m) = self.ask(zone, RecordType::SOA).await
                && m.metadata.response_code == ResponseCode::NoError
                && !m.answers.is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("named did not serve {zone} within 10 s:\n{}", self.log());
    }

    async fn ask(&self, name: &str, rtype: RecordType) -> Result<Message, String> {
        let mut q = Message::query();
        let name = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| e.to_string())?;
        q.add_query(Query::query(name, rtype));
        let bytes = q.to_vec().map_err(|e| e.to_string())?;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        socket.connect(self.addr).await.map_err(|e| e.to_string())?;
        socket.send(&bytes).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65535];
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        Message::from_vec(&buf[..n]).map_err(|e| e.to_string())
    }

    /// The TXT values BIND serves at `name` (sorted).
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let m = self.ask(name, RecordType::TXT).await.expect("BIND answers");
        let mut out: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.iter().map(|p| String::from_utf8_lossy(p)).collect::<String>()),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// The target of the CNAME BIND serves at `name` (without the trailing dot), if any.
    pub async fn cname(&self, name: &str) -> Option<String> {
        let m = self.ask(name, RecordType::CNAME).await.expect("BIND answers");
        m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_owned()),
            _ => None,
        })
    }

    /// Every TXT record of the zone whose name starts with `_` or lies below `prefix`: AXFR is not
    /// allowed, so this asks the names given.
    pub async fn txt_at(&self, names: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in names {
            for v in self.txt(n).await {
                out.push((n.to_string(), v));
            }
        }
        out
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666));
}
