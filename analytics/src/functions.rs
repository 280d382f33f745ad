//! SQL functions for investigations, registered in every session:
//!
//! - `cidr_match(addr, cidr)`: whether an address (`daddr`, `saddr`) is in a range
//!   (`'10.0.0.0/8'`, `'::1/128'`, or one address); IPv4-mapped IPv6 addresses match IPv4
//!   ranges. Null address: null; text that is not an address: false.
//! - `path_prefix(path, depth)`: the first `depth` components of a path
//!   (`path_prefix('/usr/lib/python3/os.py', 2)` = `'/usr/lib'`), for grouping file activity.
//! - `syscall_name(nr)`: the x86_64 name of a syscall number (`syscall_counts.syscall_nr`, the
//!   first of `syscall_events.args` for a raw `syscall`); null for a number with no name.
//! - `errno_name(ret)`: `'EACCES'` for `ret` = -13, as `strace` prints it; null for a
//!   non-negative result.

use std::{net::IpAddr, sync::Arc};

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray},
        datatypes::DataType,
    },
    common::{DataFusionError, Result, ScalarValue, cast::as_int64_array, cast::as_string_array},
    logical_expr::{
        ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    },
    prelude::SessionContext,
};

type Body = fn(&[ColumnarValue], usize) -> Result<ColumnarValue>;

/// A scalar function of fixed argument and return types; arguments are coerced to the listed
/// types (a `Utf8View` or `Int32` column is accepted where `Utf8` or `Int64` is listed).
#[derive(Debug)]
struct Function {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Body,
}

impl PartialEq for Function {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Function {}
impl std::hash::Hash for Function {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Function {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        (self.body)(&args.args, args.number_rows)
    }
}

fn function(name: &'static str, args: Vec<DataType>, returns: DataType, body: Body) -> ScalarUDF {
    ScalarUDF::new_from_impl(Function {
        name,
        signature: Signature::exact(args, Volatility::Immutable),
        returns,
        body,
    })
}

/// The functions this module provides, for registering and for the docs.
pub fn all() -> Vec<ScalarUDF> {
    use DataType::{Boolean, Int64, Utf8};
    vec![
        function("cidr_match", vec![Utf8, Utf8], Boolean, cidr_match),
        function("path_prefix", vec![Utf8, Int64], Utf8, path_prefix),
        function("syscall_name", vec![Int64], Utf8, syscall_name),
        function("errno_name", vec![Int64], Utf8, errno_name),
    ]
}

pub fn register(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udf(f);
    }
}

fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}

fn exec_err(msg: String) -> DataFusionError {
    DataFusionError::Execution(msg)
}

/// A range as `cidr_match` takes it: `addr/bits` or a single address.
fn parse_cidr(text: &str) -> Result<(IpAddr, u8)> {
    let bad = || {
        exec_err(format!(
            "cidr_match: {text:?} is not an address or CIDR range"
        ))
    };
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(bad)?,
        None => max,
    };
    Ok((ip, bits))
}

fn in_range(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let masked = |v: u128, width: u32| {
        if bits == 0 {
            0
        } else {
            v >> (width - u32::from(bits))
        }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            masked(u32::from(a).into(), 32) == masked(u32::from(n).into(), 32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => masked(a.into(), 128) == masked(n.into(), 128),
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_range(IpAddr::V4(a), (net, bits))),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

fn cidr_match(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    // The range is nearly always a literal: parse it once.
    let fixed = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(c))) => Some(parse_cidr(c)?),
        _ => None,
    };
    let a = arrays(args, rows)?;
    let addrs = as_string_array(&a[0])?;
    let ranges = as_string_array(&a[1])?;
    let out: BooleanArray = (0..addrs.len())
        .map(|i| {
            if addrs.is_null(i) || ranges.is_null(i) {
                return Ok(None);
            }
            let range = match fixed {
                Some(r) => r,
                None => parse_cidr(ranges.value(i))?,
            };
            Ok(Some(
                addrs
                    .value(i)
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| in_range(ip, range)),
            ))
        })
        .collect::<Result<_>>()?;
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// The first `depth` components of `path`; an absolute path keeps its leading `/`.
pub fn prefix_of(path: &str, depth: usize) -> &str {
    let start = usize::from(path.starts_with('/'));
    let mut seen = 0;
    for (i, b) in path.bytes().enumerate().skip(start) {
        if b == b'/' && i > start {
            seen += 1;
            if seen == depth {
                return &path[..i];
            }
        }
    }
    if depth == 0 {
        return &path[..start];
    }
    match path.strip_suffix('/') {
        Some(p) if p.len() >= start => p,
        _ => path,
    }
}

fn path_prefix(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    let a = arrays(args, rows)?;
    let paths = as_string_array(&a[0])?;
    let depths = as_int64_array(&a[1])?;
    let out: StringArray = (0..paths.len())
        .map(|i| {
            if paths.is_null(i) || depths.is_null(i) {
                return Ok(None);
            }
            let d = usize::try_from(depths.value(i)).map_err(|_| {
                exec_err(format!(
                    "path_prefix: depth {} is negative",
                    depths.value(i)
                ))
            })?;
            Ok(Some(prefix_of(paths.value(i), d)))
        })
        .collect::<Result<_>>()?;
    Ok(ColumnarValue::Array(Arc::new(out)))
}

fn map_ints(
    args: &[ColumnarValue],
    rows: usize,
    f: impl Fn(i64) -> Option<&'static str>,
) -> Result<ColumnarValue> {
    let a = arrays(args, rows)?;
    let nums: &Int64Array = as_int64_array(&a[0])?;
    let out: StringArray = nums.iter().map(|n| n.and_then(&f)).collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// The x86_64 name of syscall `nr` (the numbers the probes record).
pub fn syscall_name_of(nr: i64) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    syscalls::x86_64::Sysno::new(nr).map(|s| s.name())
}

fn syscall_name(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    map_ints(args, rows, syscall_name_of)
}

/// `EACCES` for -13; `None` for a non-negative result.
pub fn errno_name_of(ret: i64) -> Option<&'static str> {
    if ret >= 0 {
        return None;
    }
    let n = i32::try_from(-ret).ok()?;
    syscalls::Errno::new(n).name()
}

fn errno_name(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    map_ints(args, rows, errno_name_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes() {
        assert_eq!(prefix_of("/usr/lib/python3/os.py", 2), "/usr/lib");
        assert_eq!(prefix_of("/usr/lib/python3/os.py", 1), "/usr");
        assert_eq!(
            prefix_of("/usr/lib/python3/os.py", 9),
            "/usr/lib/python3/os.py"
        );
        assert_eq!(prefix_of("/usr/lib/", 2), "/usr/lib");
        assert_eq!(prefix_of("/usr/lib/", 5), "/usr/lib");
        assert_eq!(prefix_of("/etc", 0), "/");
        assert_eq!(prefix_of("/", 1), "/");
        assert_eq!(prefix_of("work/a/b", 2), "work/a");
        assert_eq!(prefix_of("work/a/b", 0), "");
    }

    #[test]
    fn ranges() {
        let r = |s| parse_cidr(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("10.1.2.3"), r("10.0.0.0/8")));
        assert!(!in_range(ip("11.1.2.3"), r("10.0.0.0/8")));
        assert!(in_range(ip("1.2.3.4"), r("0.0.0.0/0")));
        assert!(in_range(ip("192.0.2.7"), r("192.0.2.7")));
        assert!(!in_range(ip("192.0.2.8"), r("192.0.2.7")));
        assert!(in_range(ip("::ffff:10.0.0.1"), r("10.0.0.0/8")));
        assert!(in_range(ip("::1"), r("::1/128")));
        assert!(in_range(ip("fd00::5"), r("fd00::/8")));
        assert!(!in_range(ip("10.0.0.1"), r("fd00::/8")));
        assert!(parse_cidr("10.0.0/8").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(syscall_name_of(59), Some("execve"));
        assert_eq!(syscall_name_of(257), Some("openat"));
        assert_eq!(syscall_name_of(-1), None);
        assert_eq!(syscall_name_of(100_000), None);
        assert_eq!(errno_name_of(-13), Some("EACCES"));
        assert_eq!(errno_name_of(-2), Some("ENOENT"));
        assert_eq!(errno_name_of(0), None);
        assert_eq!(errno_name_of(3), None);
    }
}
