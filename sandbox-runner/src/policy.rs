//! The sandbox policy: what a job may use (CPU, memory, pids, time, output) and touch (files,
//! network), in the YAML shape of the reference article's examples.
//!
//! A policy file overrides a built-in preset (`extends: strict|default|permissive`, default
//! `default`) block by block, key by key; lists, `env` and `volume_mounts` replace the preset's. Everything is checked
//! before a sandbox exists: unknown keys, wrong types and impossible values are errors that name
//! the file, the line and the key.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_yaml_ng::{Mapping, Value};

/// A policy error, pointing at the file, line and key that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    pub line: Option<usize>,
    /// Dotted path of the key (`memory.limit`, `filesystem.writable_paths[1]`), empty for the
    /// document itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Built-in presets, strictest first.
pub const PRESETS: [&str; 3] = ["strict", "default", "permissive"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxPolicy {
    /// A name that groups sandboxes for baselines.
    #[serde(default)]
    pub profile: Option<String>,
    pub cpu: CpuPolicy,
    pub memory: MemoryPolicy,
    pub pids: PidsPolicy,
    pub filesystem: FilesystemPolicy,
    pub network: NetworkPolicy,
    pub limits: LimitsPolicy,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// uid inside the sandbox (0: the sandbox's root, mapped to an unprivileged host uid).
    #[serde(default)]
    pub user: u32,
    /// Syscalls refused (EPERM) beyond the default filter. The default filter cannot be loosened.
    #[serde(default)]
    pub seccomp: SeccompPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuPolicy {
    /// Cores, e.g. 0.5. Sets quota = limit × period.
    #[serde(default, deserialize_with = "opt_cores")]
    pub limit: Option<f64>,
    /// CFS period in microseconds.
    #[serde(default, deserialize_with = "opt_number")]
    pub period: Option<u64>,
    /// CFS quota in microseconds per period.
    #[serde(default, deserialize_with = "opt_number")]
    pub quota: Option<u64>,
    /// Relative weight, cgroup v1 `cpu.shares` scale (1024 = normal).
    #[serde(default, deserialize_with = "opt_number")]
    pub shares: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPolicy {
    #[serde(default)]
    pub limit: Option<ByteSize>,
    /// Soft limit: reclaimed first under pressure.
    #[serde(default)]
    pub reservation: Option<ByteSize>,
    /// Swap allowed beyond the limit; 0 = none.
    #[serde(default)]
    pub swap: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidsPolicy {
    #[serde(default, deserialize_with = "opt_number")]
    pub max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemPolicy {
    #[serde(default)]
    pub read_only_paths: Vec<PathBuf>,
    #[serde(default)]
    pub writable_paths: Vec<PathBuf>,
    #[serde(default)]
    pub forbidden_paths: Vec<PathBuf>,
    /// Named volumes and where they appear inside the sandbox (`workspace: /workspace`).
    #[serde(default)]
    pub volume_mounts: BTreeMap<String, PathBuf>,
    /// Size of the private /tmp.
    #[serde(default)]
    pub tmpfs_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace with loopback only.
    None,
    /// The host's network.
    Host,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    pub mode: NetworkMode,
    #[serde(default, deserialize_with = "ports")]
    pub blocked_ports: Vec<u16>,
    /// Not enforceable yet: refused with an explanation when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// The article's shape: `outbound: {allowed_domains, blocked_ports}`.
    #[serde(default)]
    pub outbound: Option<OutboundPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    #[serde(default, deserialize_with = "ports")]
    pub blocked_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPolicy {
    /// Wall-clock limit of a command ("30s", "10m").
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Bytes of stdout and of stderr kept per command; the rest is cut and marked.
    #[serde(default)]
    pub output_bytes: Option<ByteSize>,
    /// RLIMIT_NOFILE.
    #[serde(default, deserialize_with = "opt_number")]
    pub open_files: Option<u64>,
    /// RLIMIT_FSIZE.
    #[serde(default)]
    pub file_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompPolicy {
    /// Syscall names of the runner's architecture, refused whatever their arguments, on top of
    /// [`DEFAULT_DENIED`](crate::seccomp::DEFAULT_DENIED) and the default filter's refusals by
    /// argument.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A byte count, written as a number or with a binary suffix: `512M`, `1GiB`, `64k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!("{text:?} is not a size (e.g. 512M, 2G, 1048576)"));
        }
        let shift = match unit
            .trim()
            .to_ascii_uppercase()
            .trim_end_matches('B')
            .trim_end_matches('I')
        {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use K, M, G or T)"
                ));
            }
        };
        let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size"))?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Int(n) if n >= 0 => Ok(Self(n as u64)),
            NumberOrText::Int(n) => {
                Err(de::Error::custom(format!("{n}: a size cannot be negative")))
            }
            NumberOrText::Float(x) => Err(de::Error::custom(format!(
                "{x}: give a size in bytes or with a unit (512M)"
            ))),
            NumberOrText::Text(t) if t.trim_start().starts_with('-') => Err(de::Error::custom(
                format!("{t:?}: a size cannot be negative"),
            )),
            NumberOrText::Text(t) => Self::parse(&t).map_err(de::Error::custom),
        }
    }
}

/// The article writes numbers as strings ("0.5", "100000", "22"): accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Int(i64),
    Float(f64),
    Text(String),
}

fn opt_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::Int(n)) if n >= 0 => Ok(Some(n as u64)),
        Some(NumberOrText::Int(n)) => Err(de::Error::custom(format!("{n}: must not be negative"))),
        Some(NumberOrText::Float(x)) => {
            Err(de::Error::custom(format!("{x}: must be a whole number")))
        }
        Some(NumberOrText::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

fn opt_cores<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::Int(n)) => Ok(Some(n as f64)),
        Some(NumberOrText::Float(x)) => Ok(Some(x)),
        Some(NumberOrText::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{t:?} is not a number of cores"))),
    }
}

fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    Vec::<NumberOrText>::deserialize(d)?
        .into_iter()
        .map(|p| match p {
            NumberOrText::Int(n) if (1..=65535).contains(&n) => Ok(n as u16),
            NumberOrText::Text(t) => match t.trim().parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(de::Error::custom(format!("{t:?} is not a port (1-65535)"))),
            },
            NumberOrText::Int(n) => Err(de::Error::custom(format!("{n} is not a port (1-65535)"))),
            NumberOrText::Float(x) => {
                Err(de::Error::custom(format!("{x} is not a port (1-65535)")))
            }
        })
        .collect()
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => humantime::parse_duration(&t).map(Some).map_err(|e| {
                de::Error::custom(format!("{t:?} is not a duration ({e}; e.g. 30s, 10m, 1h)"))
            }),
        }
    }
}

const PRESET_YAML: [(&str, &str); 3] = [
    (
        "strict",
        r#"
profile: strict
cpu: { limit: 1, period: 100000, shares: 512 }
memory: { limit: 512M, reservation: 256M, swap: 0 }
pids: { max: 128 }
filesystem:
  read_only_paths: [/usr, /lib, /lib64, /bin, /sbin, /etc]
  writable_paths: [/workspace, /tmp]
  forbidden_paths: [/root, /home, /proc/kcore, /dev/mem, /sys/kernel, /var/run/docker.sock]
  volume_mounts: { workspace: /workspace }
  tmpfs_size: 256M
network: { mode: none, blocked_ports: [] }
limits: { timeout: 10m, output_bytes: 16M, open_files: 256, file_size: 1G }
env: { PATH: /usr/local/bin:/usr/bin:/bin, HOME: /workspace, LANG: C.UTF-8 }
hostname: sandbox
user: 0
"#,
    ),
    (
        "default",
        r#"
profile: default
cpu: { limit: 2, period: 100000, shares: 1024 }
memory: { limit: 2G, reservation: 1G, swap: 0 }
pids: { max: 512 }
filesystem:
  read_only_paths: [/usr, /lib, /lib64, /bin, /sbin, /etc, /opt]
  writable_paths: [/workspace, /tmp, /cache]
  forbidden_paths: [/root, /proc/kcore, /dev/mem, /sys/kernel, /var/run/docker.sock]
  volume_mounts: { workspace: /workspace, cache: /cache }
  tmpfs_size: 1G
network: { mode: none, blocked_ports: [] }
limits: { timeout: 1h, output_bytes: 64M, open_files: 1024, file_size: 4G }
env: { PATH: /usr/local/bin:/usr/bin:/bin, HOME: /workspace, LANG: C.UTF-8 }
hostname: sandbox
user: 0
"#,
    ),
    (
        "permissive",
        r#"
profile: permissive
cpu: { shares: 1024 }
memory: { limit: 8G, swap: 0 }
pids: { max: 4096 }
filesystem:
  read_only_paths: [/usr, /lib, /lib64, /bin, /sbin, /etc, /opt]
  writable_paths: [/workspace, /tmp, /cache]
  forbidden_paths: [/proc/kcore, /dev/mem]
  volume_mounts: { workspace: /workspace, cache: /cache }
  tmpfs_size: 4G
network: { mode: host, blocked_ports: [] }
limits: { timeout: 24h, output_bytes: 256M, open_files: 65536 }
env: { PATH: /usr/local/bin:/usr/bin:/bin, HOME: /workspace, LANG: C.UTF-8 }
hostname: sandbox
user: 0
"#,
    ),
];

fn preset_value(name: &str) -> Option<Value> {
    let (_, text) = PRESET_YAML.iter().find(|(n, _)| *n == name)?;
    Some(serde_yaml_ng::from_str(text).expect("built-in presets are valid YAML"))
}

/// Maps that are data, not blocks: a file's version replaces the preset's whole, so that what
/// `policy check` prints means the same when read back.
const REPLACED_MAPS: [&str; 2] = ["env", "filesystem.volume_mounts"];

/// Overlays `over` on `base` at `path`: blocks merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value, path: &str) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) if !REPLACED_MAPS.contains(&path) => {
            for (k, v) in o {
                let child = match &k {
                    Value::String(s) if path.is_empty() => s.clone(),
                    Value::String(s) => format!("{path}.{s}"),
                    _ => String::new(),
                };
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v, &child),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

impl SandboxPolicy {
    /// A built-in preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        let value = preset_value(name)?;
        let policy: Self =
            serde_yaml_ng::from_value(value).expect("built-in presets are valid policies");
        debug_assert!(policy.validate().is_ok(), "preset {name} is valid");
        Some(policy)
    }

    /// `NAME` of a preset, or the path of a policy file.
    pub fn load(name_or_path: &str) -> Result<Self, PolicyError> {
        if let Some(p) = Self::preset(name_or_path) {
            return Ok(p);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| PolicyError {
            file: name_or_path.to_owned(),
            line: None,
            key: String::new(),
            message: format!(
                "cannot read the policy ({e}); built-in presets are {}",
                PRESETS.join(", ")
            ),
        })?;
        Self::from_yaml(name_or_path, &text)
    }

    /// Parses a policy file's text; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, PolicyError> {
        let err = |key: String, message: String| PolicyError {
            file: file.to_owned(),
            line: line_of(text, &key),
            key,
            message,
        };
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| PolicyError {
            file: file.to_owned(),
            line: e.location().map(|l| l.line()),
            key: String::new(),
            message: strip_location(&e.to_string()),
        })?;
        let mut doc = match doc {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(err(
                    String::new(),
                    "a policy is a mapping of blocks (cpu, memory, filesystem, ...)".into(),
                ));
            }
        };
        let base = match doc.remove("extends") {
            None => "default".to_owned(),
            Some(Value::String(s)) if PRESETS.contains(&s.as_str()) => s,
            Some(other) => {
                return Err(err(
                    "extends".into(),
                    format!(
                        "{} is not a preset ({})",
                        serde_yaml_ng::to_string(&other).unwrap_or_default().trim(),
                        PRESETS.join(", ")
                    ),
                ));
            }
        };
        let mut merged = preset_value(&base).expect("preset exists");
        merge(&mut merged, Value::Mapping(doc), "");
        let policy: Self = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            err(key, strip_location(&e.into_inner().to_string()))
        })?;
        policy
            .validate()
            .map_err(|(key, message)| err(key, message))?;
        Ok(policy)
    }

    /// Checks the values make sense together. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, msg: String| Err((key.to_owned(), msg));
        let cpu = &self.cpu;
        if let Some(l) = cpu.limit
            && !(l > 0.0 && l <= 1024.0)
        {
            return fail(
                "cpu.limit",
                format!("{l}: give cores between 0 (exclusive) and 1024"),
            );
        }
        if let Some(p) = cpu.period
            && !(1_000..=1_000_000).contains(&p)
        {
            return fail(
                "cpu.period",
                format!("{p} µs: the kernel takes 1000 to 1000000"),
            );
        }
        if let Some(q) = cpu.quota
            && q < 1_000
        {
            return fail("cpu.quota", format!("{q} µs: at least 1000"));
        }
        if let (Some(l), Some(q)) = (cpu.limit, cpu.quota) {
            let period = cpu.period.unwrap_or(100_000) as f64;
            if ((q as f64 / period) - l).abs() > 1e-6 {
                return fail(
                    "cpu.quota",
                    format!(
                        "{q} µs per {period} µs is {} cores, but cpu.limit says {l}",
                        q as f64 / period
                    ),
                );
            }
        }
        if let Some(s) = cpu.shares
            && !(2..=262_144).contains(&s)
        {
            return fail(
                "cpu.shares",
                format!("{s}: between 2 and 262144 (1024 = normal)"),
            );
        }
        const MIN_MEMORY: u64 = 4 << 20;
        if let Some(l) = self.memory.limit
            && l.0 < MIN_MEMORY
        {
            return fail(
                "memory.limit",
                format!("{l}: at least 4M (nothing runs below that)"),
            );
        }
        if let (Some(r), Some(l)) = (self.memory.reservation, self.memory.limit)
            && r > l
        {
            return fail(
                "memory.reservation",
                format!("{r} is above memory.limit ({l})"),
            );
        }
        if self.pids.max == Some(0) {
            return fail("pids.max", "0: the command itself needs one".into());
        }
        let fs = &self.filesystem;
        for (name, list) in [
            ("read_only_paths", &fs.read_only_paths),
            ("writable_paths", &fs.writable_paths),
            ("forbidden_paths", &fs.forbidden_paths),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Some(why) = path_problem(p) {
                    return fail(
                        &format!("filesystem.{name}[{i}]"),
                        format!("{}: {why}", p.display()),
                    );
                }
            }
        }
        for (i, w) in fs.writable_paths.iter().enumerate() {
            if let Some(f) = fs.forbidden_paths.iter().find(|f| w.starts_with(f)) {
                return fail(
                    &format!("filesystem.writable_paths[{i}]"),
                    format!("{} is inside the forbidden {}", w.display(), f.display()),
                );
            }
        }
        for (name, p) in &fs.volume_mounts {
            if let Some(why) = path_problem(p) {
                return fail(
                    &format!("filesystem.volume_mounts.{name}"),
                    format!("{}: {why}", p.display()),
                );
            }
            if let Some(f) = fs.forbidden_paths.iter().find(|f| p.starts_with(f)) {
                return fail(
                    &format!("filesystem.volume_mounts.{name}"),
                    format!("{} is inside the forbidden {}", p.display(), f.display()),
                );
            }
        }
        let net = &self.network;
        let domains_key = if !net.allowed_domains.is_empty() {
            Some("network.allowed_domains")
        } else if net
            .outbound
            .as_ref()
            .is_some_and(|o| !o.allowed_domains.is_empty())
        {
            Some("network.outbound.allowed_domains")
        } else {
            None
        };
        if let Some(key) = domains_key {
            return fail(
                key,
                "domain allow-lists are not enforced yet (they come with in-kernel network policy); use mode: none \
                 (loopback only) or mode: host, and blocked_ports"
                    .into(),
            );
        }
        if self.limits.timeout == Some(Duration::ZERO) {
            return fail(
                "limits.timeout",
                "0: give a positive duration, or leave it out for none".into(),
            );
        }
        if let Some(n) = self.limits.open_files
            && n < 3
        {
            return fail(
                "limits.open_files",
                format!("{n}: at least 3 (stdin, stdout, stderr)"),
            );
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return fail(
                    &format!("env.{k}"),
                    format!("{k:?} is not an environment variable name"),
                );
            }
        }
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return fail(
                    "hostname",
                    format!("{h:?} is not a host name (letters, digits, '-', '.'; at most 64)"),
                );
            }
        }
        for (i, name) in self.seccomp.deny.iter().enumerate() {
            if let Err(e) = crate::seccomp::syscall_number(name) {
                return fail(&format!("seccomp.deny[{i}]"), e.to_string());
            }
        }
        // A sandbox maps ids 0..65536 onto its host range (see `sandbox`): the command's uid must
        // be one of them.
        if self.user >= 65_536 {
            return fail(
                "user",
                format!("{} is outside the sandbox's ids (0-65535)", self.user),
            );
        }
        if let Some(p) = &self.profile
            && (p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return fail(
                "profile",
                format!("{p:?}: letters, digits, '-', '_', '.' only"),
            );
        }
        Ok(())
    }

    /// The policy with every default filled in, as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a policy serializes")
    }

    /// Ports blocked by either spelling (`blocked_ports` or `outbound.blocked_ports`).
    pub fn blocked_ports(&self) -> Vec<u16> {
        let mut ports = self.network.blocked_ports.clone();
        if let Some(o) = &self.network.outbound {
            ports.extend(&o.blocked_ports);
        }
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

fn path_problem(p: &Path) -> Option<&'static str> {
    if !p.is_absolute() {
        return Some("paths must be absolute");
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Some("no '.' or '..' components");
    }
    None
}

/// serde_yaml's messages end with " at line L column C"; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The 1-based line of `key` (`a.b[2]`, `a.b.c`) in block-style YAML `text`: the line of the
/// deepest part of the path that the file spells out.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut parts: Vec<(String, Option<usize>)> = Vec::new();
    for seg in key.split('.').filter(|s| !s.is_empty()) {
        match seg.split_once('[') {
            Some((name, idx)) => {
                parts.push((name.to_owned(), idx.trim_end_matches(']').parse().ok()))
            }
            None => parts.push((seg.to_owned(), None)),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let (mut from, mut min_indent) = (0usize, 0usize);
    for (name, index) in parts {
        // Within the block found so far: a flow mapping (`seccomp: { deny: [..] }`) keeps its
        // keys on the parent's line, and a later block can have keys of the same name.
        let hit = (from..lines.len())
            .take_while(|&i| {
                let l = lines[i];
                let t = l.trim_start();
                t.is_empty() || t.starts_with('#') || l.len() - t.len() >= min_indent
            })
            .find(|&i| {
                let t = lines[i].trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{name}:")) || t.starts_with(&format!("\"{name}\":"))
            });
        let Some(hit) = hit else { break };
        found = Some(hit + 1);
        let indent = lines[hit].len() - lines[hit].trim_start().len();
        from = hit + 1;
        min_indent = indent + 1;
        if let Some(n) = index {
            // Block list items below the key; a flow list ([a, b]) stays on the key's line.
            let items: Vec<usize> = (from..lines.len())
                .take_while(|&i| {
                    let l = lines[i];
                    l.trim().is_empty()
                        || l.len() - l.trim_start().len() > indent
                        || l.trim_start().starts_with("- ")
                })
                .filter(|&i| lines[i].trim_start().starts_with("- "))
                .collect();
            if let Some(&i) = items.get(n) {
                found = Some(i + 1);
            }
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<SandboxPolicy, PolicyError> {
        SandboxPolicy::from_yaml("p.yaml", text)
    }

    #[test]
    fn presets_are_valid_and_ordered() {
        let [s, d, p] = PRESETS.map(|n| SandboxPolicy::preset(n).unwrap());
        for pol in [&s, &d, &p] {
            pol.validate().unwrap();
            // What `policy check` prints parses back to the same policy.
            assert_eq!(&SandboxPolicy::from_yaml("x", &pol.to_yaml()).unwrap(), pol);
        }
        assert!(s.memory.limit < d.memory.limit && d.memory.limit < p.memory.limit);
        assert!(s.pids.max < d.pids.max && d.pids.max < p.pids.max);
        assert_eq!(
            (s.network.mode, p.network.mode),
            (NetworkMode::None, NetworkMode::Host)
        );
        assert_eq!(s.memory.swap, ByteSize(0));
    }

    #[test]
    fn the_articles_shapes_parse() {
        let pol = check(
            r#"
cpu:
  limit: "0.5"
  period: "100000"
  quota: "50000"
  shares: 512
memory:
  limit: "512M"
  reservation: "256M"
  swap: "0"
filesystem:
  read_only_paths: ["/usr/lib", "/etc", "/proc/sys"]
  writable_paths: ["/tmp/agent_workspace", "/home/agent/data"]
  forbidden_paths: ["/dev/mem", "/proc/kcore", "/sys/kernel"]
  volume_mounts: { workspace: "/workspace", cache: "/cache" }
network:
  mode: none
  outbound:
    blocked_ports: ["22", "25", "53"]
"#,
        )
        .unwrap();
        assert_eq!(pol.cpu.limit, Some(0.5));
        assert_eq!(pol.cpu.quota, Some(50_000));
        assert_eq!(pol.memory.limit, Some(ByteSize(512 << 20)));
        assert_eq!(pol.blocked_ports(), vec![22, 25, 53]);
        assert_eq!(
            pol.profile.as_deref(),
            Some("default"),
            "unset keys come from the default preset"
        );
        assert_eq!(pol.limits.timeout, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn extends_picks_the_base_and_lists_replace() {
        let pol = check(
            "extends: strict\npids: { max: 64 }\nfilesystem:\n  writable_paths: [/workspace]\n",
        )
        .unwrap();
        assert_eq!(pol.pids.max, Some(64));
        assert_eq!(
            pol.memory.limit,
            Some(ByteSize(512 << 20)),
            "strict's memory"
        );
        assert_eq!(
            pol.filesystem.writable_paths,
            vec![PathBuf::from("/workspace")]
        );
        let e = check("extends: lenient\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(1), "extends"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = check("cpu:\n  limit: 1\nmemory:\n  limit: 1G\n  colour: blue\n").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_str()),
            ("p.yaml", Some(5), "memory.colour")
        );
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(
            e.to_string()
                .starts_with("p.yaml:5: memory.colour: unknown field `colour`"),
            "{e}"
        );

        let e = check("memory:\n  limit: -1G\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "memory.limit"));
        assert!(e.message.contains("negative"), "{e}");

        let e = check("hostname: box\nuser: 70000\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "user"));
        assert!(e.message.contains("0-65535"), "{e}");

        let e = check("pids:\n  max: lots\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "pids.max"));

        let e = check("filesystem:\n  forbidden_paths: [/srv]\n  writable_paths:\n    - /workspace\n    - /srv/data\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(5), "filesystem.writable_paths[1]")
        );
        assert!(e.message.contains("inside the forbidden /srv"), "{e}");

        let e = check("network:\n  mode: none\n  allowed_domains: [api.openai.com]\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "network.allowed_domains")
        );
        assert!(e.message.contains("not enforced yet"), "{e}");

        let e = check("network:\n  mode: bridge\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "network.mode"));

        let e = check("memory:\n  limit: 1G\n  reservation: 2G\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(3), "memory.reservation"));

        let e = check("cpu:\n  limit: 0.5\n  quota: 80000\n").unwrap_err();
        assert_eq!(e.key, "cpu.quota");

        let e = check("limits:\n  timeout: soon\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "limits.timeout"));

        let e = check("cpu: [1, 2]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(1), "cpu"));

        let e = check("memory: { limit: 2M }\ncpu:\n  limit: 1\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(1), "memory.limit"),
            "a flow mapping's keys are on its line, not in a later block"
        );

        let e = check("memory: {limit: 1G\n").unwrap_err();
        assert!(
            e.line.is_some() && e.key.is_empty(),
            "YAML syntax errors carry the parser's line: {e}"
        );
    }

    #[test]
    fn seccomp_names_are_checked_and_round_trip() {
        assert_eq!(
            check("").unwrap().seccomp,
            SeccompPolicy::default(),
            "no presets deny beyond the default filter"
        );
        let pol = check("extends: strict\nseccomp:\n  deny: [getcwd, bpf, getcwd]\n").unwrap();
        assert_eq!(pol.seccomp.deny, ["getcwd", "bpf", "getcwd"]);
        assert_eq!(
            pol.memory.limit,
            Some(ByteSize(512 << 20)),
            "strict's memory"
        );
        assert_eq!(
            &SandboxPolicy::from_yaml("x", &pol.to_yaml()).unwrap(),
            &pol
        );

        let e = check("seccomp:\n  deny:\n    - getcwd\n    - fooo\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(4), "seccomp.deny[1]"));
        assert_eq!(
            e.message,
            format!("\"fooo\" is not a syscall on {}", std::env::consts::ARCH)
        );

        let e = check("pids: { max: 8 }\nseccomp: { deny: [Mount] }\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "seccomp.deny[0]"));

        let e = check("seccomp:\n  allow: [bpf]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "seccomp.allow"));
        assert!(e.message.contains("unknown field `allow`"), "{e}");

        let e = check("seccomp:\n  deny: bpf\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "seccomp.deny"));
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(ByteSize::parse("512M"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("64k"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("1.5G"), Ok(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512M");
    }
}
