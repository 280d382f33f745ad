//! What the synthetic sandboxes are made of: programs, the files they open, the destinations
//! they reach, the job profiles. Chosen to give the audit log the text cardinalities of a real
//! one: a few dozen programs, a few thousand library paths shared by every sandbox, workspace
//! and temporary paths mostly unique to one sandbox, a few hundred destinations with a heavy
//! head.

/// What a program does once it runs: which libraries it loads and which kinds of work it mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shell,
    Python,
    Pip,
    Node,
    Npm,
    Git,
    Compiler,
    CompilerPass,
    Make,
    Coreutil,
    Fetch,
    Suspicious,
}

#[derive(Debug)]
pub struct Program {
    /// The name a shell finds it by, and the kernel's `comm` after exec (15 bytes at most).
    pub name: &'static str,
    /// The path execve is given (a shell resolves its PATH itself; a shebang's `env` too).
    pub path: &'static str,
    /// The executable after symlinks (`/usr/bin/python3` → `/usr/bin/python3.11`).
    pub exe: &'static str,
    pub kind: Kind,
    /// Work steps after start-up: a median and how far it spreads (log-normal sigma).
    pub steps: (f64, f64),
}

macro_rules! program {
    ($name:literal, $path:literal, $exe:literal, $kind:ident, $median:literal, $sigma:literal) => {
        Program {
            name: $name,
            path: $path,
            exe: $exe,
            kind: Kind::$kind,
            steps: ($median, $sigma),
        }
    };
}

pub const SH: Program = program!("sh", "/bin/sh", "/usr/bin/dash", Shell, 6.0, 0.6);
pub const BASH: Program = program!("bash", "/bin/bash", "/usr/bin/bash", Shell, 8.0, 0.6);
pub const PYTHON: Program = program!(
    "python3",
    "/usr/bin/python3",
    "/usr/bin/python3.11",
    Python,
    400.0,
    1.2
);
pub const PIP: Program = program!(
    "pip",
    "/usr/local/bin/pip",
    "/usr/bin/python3.11",
    Pip,
    900.0,
    0.8
);
pub const NODE: Program = program!("node", "/usr/bin/node", "/usr/bin/node", Node, 500.0, 1.1);
pub const NPM: Program = program!("npm", "/usr/bin/npm", "/usr/bin/node", Npm, 1500.0, 0.8);
pub const GIT: Program = program!("git", "/usr/bin/git", "/usr/bin/git", Git, 60.0, 1.0);
pub const CC: Program = program!(
    "cc",
    "/usr/bin/cc",
    "/usr/bin/x86_64-linux-gnu-gcc-12",
    Compiler,
    10.0,
    0.5
);
pub const CC1: Program = program!(
    "cc1",
    "/usr/libexec/gcc/x86_64-linux-gnu/12/cc1",
    "/usr/libexec/gcc/x86_64-linux-gnu/12/cc1",
    CompilerPass,
    120.0,
    0.7
);
pub const AS: Program = program!(
    "as",
    "/usr/bin/as",
    "/usr/bin/x86_64-linux-gnu-as",
    CompilerPass,
    8.0,
    0.4
);
pub const LD: Program = program!(
    "ld",
    "/usr/bin/ld",
    "/usr/bin/x86_64-linux-gnu-ld.bfd",
    CompilerPass,
    40.0,
    0.5
);
pub const MAKE: Program = program!("make", "/usr/bin/make", "/usr/bin/make", Make, 12.0, 0.6);
pub const CURL: Program = program!("curl", "/usr/bin/curl", "/usr/bin/curl", Fetch, 12.0, 0.4);
pub const WGET: Program = program!("wget", "/usr/bin/wget", "/usr/bin/wget", Fetch, 10.0, 0.4);

/// Short programs of shell scripts and of agents' subprocesses.
pub const COREUTILS: [Program; 16] = [
    program!("ls", "/usr/bin/ls", "/usr/bin/ls", Coreutil, 6.0, 0.8),
    program!("cat", "/usr/bin/cat", "/usr/bin/cat", Coreutil, 3.0, 0.5),
    program!(
        "grep",
        "/usr/bin/grep",
        "/usr/bin/grep",
        Coreutil,
        10.0,
        1.0
    ),
    program!("sed", "/usr/bin/sed", "/usr/bin/sed", Coreutil, 4.0, 0.5),
    program!("awk", "/usr/bin/awk", "/usr/bin/mawk", Coreutil, 4.0, 0.5),
    program!(
        "find",
        "/usr/bin/find",
        "/usr/bin/find",
        Coreutil,
        30.0,
        1.0
    ),
    program!("head", "/usr/bin/head", "/usr/bin/head", Coreutil, 2.0, 0.3),
    program!("wc", "/usr/bin/wc", "/usr/bin/wc", Coreutil, 3.0, 0.5),
    program!("sort", "/usr/bin/sort", "/usr/bin/sort", Coreutil, 4.0, 0.5),
    program!(
        "mkdir",
        "/usr/bin/mkdir",
        "/usr/bin/mkdir",
        Coreutil,
        2.0,
        0.3
    ),
    program!("rm", "/usr/bin/rm", "/usr/bin/rm", Coreutil, 5.0, 0.8),
    program!("cp", "/usr/bin/cp", "/usr/bin/cp", Coreutil, 5.0, 0.8),
    program!("tar", "/usr/bin/tar", "/usr/bin/tar", Coreutil, 40.0, 1.0),
    program!(
        "uname",
        "/usr/bin/uname",
        "/usr/bin/uname",
        Coreutil,
        1.0,
        0.2
    ),
    program!("env", "/usr/bin/env", "/usr/bin/env", Coreutil, 1.0, 0.2),
    program!("date", "/usr/bin/date", "/usr/bin/date", Coreutil, 2.0, 0.3),
];

/// A program of a suspicious act (see `Act`).
pub const SUDO: Program = program!(
    "sudo",
    "/usr/bin/sudo",
    "/usr/bin/sudo",
    Suspicious,
    4.0,
    0.3
);

/// A job profile: the policy's `profile:`, what its sandboxes run, and how.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    /// The sandbox's `started` command.
    pub command: &'static str,
    /// Programs its scripts start, with their weights.
    pub runs: &'static [(&'static Program, u32)],
    /// The policy's network: true = outbound allowed, false = loopback only (`none`).
    pub network: bool,
    /// Memory limit, MiB.
    pub memory_limit_mb: u64,
    /// The policy's `user:` mapped to the host (the sandbox's root is 1000000000).
    pub uid: u32,
    /// Share of the sandboxes.
    pub weight: u32,
}

pub const PROFILES: [Profile; 7] = [
    Profile {
        name: "python-agent",
        command: "sh -c pip install -q -r requirements.txt && python3 agent.py",
        runs: &[(&PYTHON, 10), (&PIP, 2), (&GIT, 2), (&SH, 1)],
        network: true,
        memory_limit_mb: 2048,
        uid: 1_000_000_000,
        weight: 34,
    },
    Profile {
        name: "node-agent",
        command: "sh -c npm ci && node index.js",
        runs: &[(&NODE, 10), (&NPM, 2), (&GIT, 2), (&SH, 1)],
        network: true,
        memory_limit_mb: 2048,
        uid: 1_000_000_000,
        weight: 18,
    },
    Profile {
        name: "c-build",
        command: "sh -c make -j2 && ./build/app --selftest",
        runs: &[(&MAKE, 3), (&CC, 10), (&SH, 1)],
        network: false,
        memory_limit_mb: 512,
        uid: 1_000_000_000,
        weight: 12,
    },
    Profile {
        name: "data-etl",
        command: "python3 etl.py --input data/raw --output out",
        runs: &[(&PYTHON, 10), (&SH, 1)],
        network: false,
        memory_limit_mb: 4096,
        uid: 1_000_001_000,
        weight: 14,
    },
    Profile {
        name: "git-ops",
        command: "sh -c git clone -q repo.bundle src && cd src && git log --oneline | head",
        runs: &[(&GIT, 10), (&SH, 2)],
        network: true,
        memory_limit_mb: 512,
        uid: 1_000_001_000,
        weight: 8,
    },
    Profile {
        name: "shell-tools",
        command: "bash run.sh",
        runs: &[(&BASH, 2), (&SH, 1), (&CURL, 2), (&WGET, 1), (&PYTHON, 2)],
        network: true,
        memory_limit_mb: 512,
        uid: 1_000_000_000,
        weight: 10,
    },
    Profile {
        name: "default",
        command: "sh -c ./job.sh",
        runs: &[(&SH, 2), (&PYTHON, 3), (&GIT, 1)],
        network: false,
        memory_limit_mb: 2048,
        uid: 1_000_000_000,
        weight: 4,
    },
];

/// What the dynamic loader opens for every dynamically linked program: hwcaps directories that
/// do not exist first (ENOENT), then the cache and the libraries.
pub const LOADER_MISSES: [&str; 4] = [
    "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libc.so.6",
    "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1",
    "/usr/lib/x86_64-linux-gnu/tls/x86_64/libz.so.1",
];
pub const LIBS: [&str; 18] = [
    "/etc/ld.so.cache",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libm.so.6",
    "/lib/x86_64-linux-gnu/libz.so.1",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libcrypto.so.3",
    "/lib/x86_64-linux-gnu/libffi.so.8",
    "/lib/x86_64-linux-gnu/libexpat.so.1",
    "/lib/x86_64-linux-gnu/libstdc++.so.6",
    "/lib/x86_64-linux-gnu/libgcc_s.so.1",
    "/lib/x86_64-linux-gnu/libtinfo.so.6",
    "/lib/x86_64-linux-gnu/libpcre2-8.so.0",
    "/lib/x86_64-linux-gnu/libselinux.so.1",
    "/lib/x86_64-linux-gnu/libacl.so.1",
    "/lib/x86_64-linux-gnu/libbz2.so.1.0",
    "/lib/x86_64-linux-gnu/liblzma.so.5",
    "/lib/x86_64-linux-gnu/libuuid.so.1",
    "/usr/lib/locale/locale-archive",
];

/// Files below /etc every program may read.
pub const ETC_READS: [&str; 14] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/localtime",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/openssl.cnf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/os-release",
    "/etc/mime.types",
    "/etc/gitconfig",
    "/etc/npmrc",
];

/// Writes below /etc: configuration a job tries to change. The sandbox's /etc is read-only, so
/// most fail (EROFS, EACCES); a few permissive sandboxes manage.
pub const ETC_WRITES: [&str; 10] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/pip.conf",
    "/etc/profile.d/agent-env.sh",
    "/etc/apt/sources.list.d/extra.list",
    "/etc/environment",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/npmrc",
    "/etc/passwd",
    "/etc/cron.d/agent-job",
];

pub const PYTHON_MODULES: [&str; 64] = [
    "os",
    "abc",
    "io",
    "stat",
    "codecs",
    "encodings/__init__",
    "encodings/utf_8",
    "encodings/aliases",
    "_collections_abc",
    "posixpath",
    "genericpath",
    "site",
    "_sitebuiltins",
    "types",
    "enum",
    "functools",
    "collections/__init__",
    "keyword",
    "operator",
    "reprlib",
    "re/__init__",
    "re/_compiler",
    "re/_parser",
    "re/_constants",
    "re/_casefix",
    "copyreg",
    "warnings",
    "json/__init__",
    "json/decoder",
    "json/scanner",
    "json/encoder",
    "typing",
    "contextlib",
    "pathlib",
    "fnmatch",
    "ntpath",
    "urllib/__init__",
    "urllib/parse",
    "ipaddress",
    "socket",
    "selectors",
    "ssl",
    "base64",
    "struct",
    "hashlib",
    "random",
    "bisect",
    "datetime",
    "locale",
    "subprocess",
    "signal",
    "threading",
    "logging/__init__",
    "traceback",
    "linecache",
    "tokenize",
    "token",
    "weakref",
    "string",
    "tempfile",
    "shutil",
    "csv",
    "argparse",
    "gettext",
];

pub const PYTHON_PACKAGES: [&str; 24] = [
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
    "numpy",
    "pandas",
    "yaml",
    "pydantic",
    "httpx",
    "anyio",
    "sniffio",
    "openai",
    "tqdm",
    "click",
    "jinja2",
    "markupsafe",
    "dateutil",
    "six",
    "pytz",
    "attr",
    "packaging",
    "typing_extensions",
    "h11",
];

pub const PACKAGE_FILES: [&str; 12] = [
    "__init__",
    "api",
    "models",
    "utils",
    "exceptions",
    "compat",
    "core",
    "_internal",
    "sessions",
    "adapters",
    "structures",
    "version",
];

pub const NODE_PACKAGES: [&str; 24] = [
    "express",
    "lodash",
    "axios",
    "debug",
    "ms",
    "body-parser",
    "qs",
    "mime",
    "chalk",
    "commander",
    "semver",
    "uuid",
    "dotenv",
    "ws",
    "yargs",
    "glob",
    "minimatch",
    "tslib",
    "react",
    "zod",
    "undici",
    "follow-redirects",
    "form-data",
    "combined-stream",
];

pub const NODE_FILES: [&str; 10] = [
    "package.json",
    "index.js",
    "lib/index.js",
    "lib/utils.js",
    "dist/index.cjs",
    "lib/core.js",
    "dist/esm/index.mjs",
    "src/main.js",
    "lib/parse.js",
    "README.md",
];

pub const C_HEADERS: [&str; 20] = [
    "stdio.h",
    "stdlib.h",
    "string.h",
    "unistd.h",
    "errno.h",
    "stdint.h",
    "stddef.h",
    "sys/types.h",
    "sys/stat.h",
    "fcntl.h",
    "time.h",
    "pthread.h",
    "signal.h",
    "limits.h",
    "assert.h",
    "ctype.h",
    "math.h",
    "stdarg.h",
    "features.h",
    "bits/libc-header-start.h",
];

pub const WORKSPACE_DIRS: [&str; 12] = [
    "src",
    "data",
    "tests",
    "out",
    "build",
    "docs",
    "lib",
    "app",
    "scripts",
    "notebooks",
    "data/raw",
    "reports",
];
pub const WORKSPACE_NAMES: [&str; 24] = [
    "main",
    "utils",
    "model",
    "data",
    "report",
    "config",
    "test_main",
    "client",
    "server",
    "handler",
    "parser",
    "schema",
    "train",
    "eval",
    "features",
    "loader",
    "cache",
    "summary",
    "records",
    "output",
    "input",
    "notes",
    "results",
    "index",
];
pub const WORKSPACE_EXTS: [&str; 10] =
    ["py", "json", "csv", "txt", "md", "js", "c", "h", "o", "log"];

/// Where the sandboxes connect: a head of package registries, code hosting and model APIs that
/// most jobs reach, then a long tail (see `destinations`).
pub const HEAD_DESTINATIONS: [(&str, u16); 16] = [
    ("151.101.0.223", 443),        // pypi.org
    ("151.101.64.223", 443),       // pypi.org
    ("146.75.116.223", 443),       // files.pythonhosted.org
    ("104.16.27.34", 443),         // registry.npmjs.org
    ("104.16.30.34", 443),         // registry.npmjs.org
    ("140.82.112.3", 443),         // github.com
    ("140.82.114.4", 443),         // github.com
    ("185.199.108.133", 443),      // raw.githubusercontent.com
    ("162.159.140.245", 443),      // api.openai.com
    ("160.79.104.10", 443),        // api.anthropic.com
    ("142.250.74.110", 443),       // googleapis
    ("52.216.8.59", 443),          // s3
    ("10.20.0.15", 5432),          // internal postgres
    ("10.20.0.16", 6379),          // internal redis
    ("10.20.1.40", 8080),          // internal artifact cache
    ("2606:4700::6810:1b22", 443), // registry.npmjs.org over IPv6
];

/// The loopback resolver glibc asks first (systemd-resolved's stub).
pub const DNS_STUB: (&str, u16) = ("127.0.0.53", 53);
