//! Where the kernel struct fields the probes read lie in the running kernel (the exec probe's
//! facts about the task, the file probes' walk from an open descriptor to its path), found in its
//! BTF (`/sys/kernel/btf/vmlinux`) at load time and handed to the probes through `SETTINGS`.
//!
//! aya-ebpf programs written in Rust get no CO-RE relocations, so the collector does the part of
//! libbpf's work they need: a struct's member offsets by name, through anonymous members (a
//! randomized or grouped `task_struct` nests its fields in unnamed structs) and along dotted
//! paths (`f_path.dentry`). The BTF format is the kernel's UAPI (`include/uapi/linux/btf.h`);
//! only the type section's layout and struct members are read here. A field this kernel lacks
//! is reported, and the fact it serves is left null in the rows rather than guessed.

use std::collections::HashMap;

use sandwatch_probes_abi::settings;

/// The kernel's own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;

// BTF_KIND_* (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF is malformed at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
}

fn malformed(at: usize, what: &'static str) -> BtfError {
    BtfError::Malformed { at, what }
}

/// One type of the type section: where its header starts, and its decoded header.
#[derive(Clone, Copy, Debug)]
struct TypeEntry {
    /// Offset of the `btf_type` header in the type section.
    at: usize,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` for ints, structs, unions, enums; the referenced type id for the others.
    size_or_type: u32,
}

/// A parsed BTF blob: its type and string sections, the types by id, and struct/union ids by
/// name.
pub struct Btf {
    types_section: Vec<u8>,
    strings: Vec<u8>,
    little_endian: bool,
    /// Index = type id - 1 (id 0 is void).
    types: Vec<TypeEntry>,
    composites: HashMap<String, u32>,
}

impl Btf {
    pub fn from_file(path: &str) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, BtfError> {
        let magic = bytes.get(..2).ok_or_else(|| malformed(0, "no header"))?;
        let little_endian = match [magic[0], magic[1]] {
            m if u16::from_le_bytes(m) == BTF_MAGIC => true,
            m if u16::from_be_bytes(m) == BTF_MAGIC => false,
            _ => return Err(malformed(0, "bad magic")),
        };
        let word = |at: usize| -> Result<u32, BtfError> {
            let b: [u8; 4] = bytes
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| malformed(at, "header cut short"))?;
            Ok(if little_endian {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            })
        };
        // struct btf_header { u16 magic; u8 version; u8 flags; u32 hdr_len;
        //                     u32 type_off; u32 type_len; u32 str_off; u32 str_len; }
        let hdr_len = word(4)? as usize;
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let section = |off: usize, len: usize, what: &'static str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some(start..start.checked_add(len)?))
                .and_then(|range| bytes.get(range))
                .ok_or_else(|| malformed(hdr_len + off, what))
        };
        let types_section = section(type_off, type_len, "type section out of bounds")?.to_vec();
        let strings = section(str_off, str_len, "string section out of bounds")?.to_vec();
        let mut btf = Btf {
            types_section,
            strings,
            little_endian,
            types: Vec::new(),
            composites: HashMap::new(),
        };
        btf.index()?;
        Ok(btf)
    }

    fn u32_at(&self, at: usize) -> Result<u32, BtfError> {
        let b: [u8; 4] = self
            .types_section
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| malformed(at, "type cut short"))?;
        Ok(if self.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    /// Walks the type section once: every type's header, and struct/union ids by name.
    fn index(&mut self) -> Result<(), BtfError> {
        let mut at = 0usize;
        while at < self.types_section.len() {
            let name_off = self.u32_at(at)?;
            let info = self.u32_at(at + 4)?;
            let size_or_type = self.u32_at(at + 8)?;
            let entry = TypeEntry {
                at,
                kind: (info >> 24) & 0x1f,
                vlen: info & 0xffff,
                kind_flag: info >> 31 != 0,
                size_or_type,
            };
            let vlen = entry.vlen as usize;
            // What follows the 12-byte header, per kind.
            let extra = match entry.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                _ => return Err(malformed(at, "unknown type kind")),
            };
            if matches!(entry.kind, KIND_STRUCT | KIND_UNION) && name_off != 0 {
                let id = self.types.len() as u32 + 1;
                let name = self.name(name_off).to_owned();
                // The first definition wins: vmlinux has one per name.
                self.composites.entry(name).or_insert(id);
            }
            self.types.push(entry);
            at += 12 + extra;
        }
        if at != self.types_section.len() {
            return Err(malformed(at, "last type runs past the type section"));
        }
        Ok(())
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn entry(&self, id: u32) -> Option<&TypeEntry> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// `id` with typedefs and qualifiers (const, volatile, restrict, type tags) peeled off.
    fn resolve(&self, mut id: u32) -> Option<(u32, &TypeEntry)> {
        for _ in 0..32 {
            let t = self.entry(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// Size in bytes of type `id` (after peeling typedefs), for the kinds a field can have here.
    fn size_of(&self, id: u32) -> Option<usize> {
        let (_, t) = self.resolve(id)?;
        match t.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                Some(t.size_or_type as usize)
            }
            KIND_PTR => Some(8),
            _ => None,
        }
    }

    /// (byte offset, type id) of member `name` in struct/union `id`, looking inside anonymous
    /// struct/union members too. Bitfields are not byte-addressable: not found.
    fn member(&self, id: u32, name: &str) -> Option<(u64, u32)> {
        let (_, t) = self.resolve(id)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for i in 0..t.vlen as usize {
            let at = t.at + 12 + 12 * i;
            let (name_off, ty, raw) = (
                self.u32_at(at).ok()?,
                self.u32_at(at + 4).ok()?,
                self.u32_at(at + 8).ok()?,
            );
            let (bit_offset, bitfield) = if t.kind_flag {
                (raw & 0xff_ffff, raw >> 24 != 0)
            } else {
                (raw, false)
            };
            let member_name = self.name(name_off);
            if member_name == name {
                if bitfield || bit_offset % 8 != 0 {
                    return None;
                }
                return Some((u64::from(bit_offset / 8), ty));
            }
            if member_name.is_empty()
                && bit_offset % 8 == 0
                && let Some((off, found)) = self.member(ty, name)
            {
                return Some((u64::from(bit_offset / 8) + off, found));
            }
        }
        None
    }

    /// Byte offset and size of `path` (`member` or `member.member...`) in struct `struct_name`.
    pub fn field(&self, struct_name: &str, path: &str) -> Option<(u64, usize)> {
        let mut id = *self.composites.get(struct_name)?;
        let mut offset = 0u64;
        for part in path.split('.') {
            let (off, ty) = self.member(id, part)?;
            offset += off;
            id = ty;
        }
        Some((offset, self.size_of(id)?))
    }
}

/// One field a probe reads: its SETTINGS key, the struct, the member paths to try in order
/// (kernels moved some fields), the sizes the probe can read (empty: any, for an embedded struct
/// whose offset only is used), and what it serves.
struct FieldSpec {
    key: u32,
    struct_name: &'static str,
    paths: &'static [&'static str],
    sizes: &'static [usize],
    serves: &'static str,
}

const PTR: &[usize] = &[8];
const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        key: settings::TASK_SIGNAL,
        struct_name: "task_struct",
        paths: &["signal"],
        sizes: PTR,
        serves: "tty",
    },
    FieldSpec {
        key: settings::SIGNAL_TTY,
        struct_name: "signal_struct",
        paths: &["tty"],
        sizes: PTR,
        serves: "tty",
    },
    FieldSpec {
        key: settings::TTY_INDEX,
        struct_name: "tty_struct",
        paths: &["index"],
        sizes: &[4],
        serves: "tty",
    },
    FieldSpec {
        key: settings::TTY_DRIVER,
        struct_name: "tty_struct",
        paths: &["driver"],
        sizes: PTR,
        serves: "tty",
    },
    FieldSpec {
        key: settings::DRIVER_MAJOR,
        struct_name: "tty_driver",
        paths: &["major"],
        sizes: &[4],
        serves: "tty",
    },
    FieldSpec {
        key: settings::DRIVER_MINOR_START,
        struct_name: "tty_driver",
        paths: &["minor_start"],
        sizes: &[4],
        serves: "tty",
    },
    FieldSpec {
        key: settings::TASK_CRED,
        struct_name: "task_struct",
        paths: &["cred"],
        sizes: PTR,
        serves: "cap_effective, cap_permitted, cap_inheritable",
    },
    // kernel_cap_t: `u64 val` since 6.3, `u32 cap[2]` before; 8 bytes, bit n = capability n
    // either way on a little-endian machine.
    FieldSpec {
        key: settings::CRED_CAP_INHERITABLE,
        struct_name: "cred",
        paths: &["cap_inheritable"],
        sizes: &[8],
        serves: "cap_effective, cap_permitted, cap_inheritable",
    },
    FieldSpec {
        key: settings::CRED_CAP_PERMITTED,
        struct_name: "cred",
        paths: &["cap_permitted"],
        sizes: &[8],
        serves: "cap_effective, cap_permitted, cap_inheritable",
    },
    FieldSpec {
        key: settings::CRED_CAP_EFFECTIVE,
        struct_name: "cred",
        paths: &["cap_effective"],
        sizes: &[8],
        serves: "cap_effective, cap_permitted, cap_inheritable",
    },
    FieldSpec {
        key: settings::TASK_LOGINUID,
        struct_name: "task_struct",
        paths: &["loginuid"],
        sizes: &[4],
        serves: "loginuid",
    },
    FieldSpec {
        key: settings::TASK_MM,
        struct_name: "task_struct",
        paths: &["mm"],
        sizes: PTR,
        serves: "exe_from_memfd, exe_ctime, exe_written_in_sandbox",
    },
    FieldSpec {
        key: settings::MM_EXE_FILE,
        struct_name: "mm_struct",
        paths: &["exe_file"],
        sizes: PTR,
        serves: "exe_from_memfd, exe_ctime, exe_written_in_sandbox",
    },
    FieldSpec {
        key: settings::FILE_DENTRY,
        struct_name: "file",
        paths: &["f_path.dentry"],
        sizes: PTR,
        serves: "exe_from_memfd",
    },
    FieldSpec {
        key: settings::DENTRY_NAME,
        struct_name: "dentry",
        paths: &["d_name.name"],
        sizes: PTR,
        serves: "exe_from_memfd",
    },
    FieldSpec {
        key: settings::FILE_INODE,
        struct_name: "file",
        paths: &["f_inode"],
        sizes: PTR,
        serves: "exe_ctime, exe_written_in_sandbox",
    },
    FieldSpec {
        key: settings::INODE_CTIME_SEC,
        struct_name: "inode",
        paths: &["i_ctime_sec", "__i_ctime.tv_sec", "i_ctime.tv_sec"],
        sizes: &[8],
        serves: "exe_ctime, exe_written_in_sandbox",
    },
    // The probe reads 4 bytes: all of a u32, the low half of an older `long tv_nsec`.
    FieldSpec {
        key: settings::INODE_CTIME_NSEC,
        struct_name: "inode",
        paths: &["i_ctime_nsec", "__i_ctime.tv_nsec", "i_ctime.tv_nsec"],
        sizes: &[4, 8],
        serves: "exe_ctime, exe_written_in_sandbox",
    },
    // The file probes' walk from a descriptor to its path (path kill orders).
    FieldSpec {
        key: settings::TASK_FILES,
        struct_name: "task_struct",
        paths: &["files"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FILES_FDT,
        struct_name: "files_struct",
        paths: &["fdt"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FDTABLE_MAX_FDS,
        struct_name: "fdtable",
        paths: &["max_fds"],
        sizes: &[4],
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FDTABLE_FD,
        struct_name: "fdtable",
        paths: &["fd"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FILE_VFSMOUNT,
        struct_name: "file",
        paths: &["f_path.mnt"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::DENTRY_PARENT,
        struct_name: "dentry",
        paths: &["d_parent"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::DENTRY_NAME_LEN,
        struct_name: "dentry",
        paths: &["d_name.len"],
        sizes: &[4],
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::VFSMOUNT_ROOT,
        struct_name: "vfsmount",
        paths: &["mnt_root"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::MOUNT_MNT,
        struct_name: "mount",
        paths: &["mnt"],
        sizes: &[],
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::MOUNT_PARENT,
        struct_name: "mount",
        paths: &["mnt_parent"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::MOUNT_MOUNTPOINT,
        struct_name: "mount",
        paths: &["mnt_mountpoint"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::TASK_FS,
        struct_name: "task_struct",
        paths: &["fs"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FS_ROOT_MNT,
        struct_name: "fs_struct",
        paths: &["root.mnt"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
    FieldSpec {
        key: settings::FS_ROOT_DENTRY,
        struct_name: "fs_struct",
        paths: &["root.dentry"],
        sizes: PTR,
        serves: OPENED_PATH,
    },
];

/// What the walk from a descriptor to its path serves.
const OPENED_PATH: &str = "path kill orders on the path an open descriptor names";

/// The offsets to write into SETTINGS, and what could not be found.
#[derive(Debug)]
pub struct FieldOffsets {
    /// (SETTINGS key, byte offset or `OFFSET_UNKNOWN`), one per field the probe reads.
    pub values: Vec<(u32, u64)>,
    /// `struct.field (serves: columns)` for every field not found; empty when all were.
    pub missing: Vec<String>,
}

impl FieldOffsets {
    /// Every field the probes read, in `btf`.
    pub fn find(btf: &Btf) -> Self {
        let mut values = Vec::with_capacity(FIELDS.len());
        let mut missing = Vec::new();
        for f in FIELDS {
            let found = f
                .paths
                .iter()
                .filter_map(|p| btf.field(f.struct_name, p))
                .find(|(_, size)| f.sizes.is_empty() || f.sizes.contains(size));
            match found {
                Some((off, _)) => values.push((f.key, off)),
                None => {
                    values.push((f.key, sandwatch_probes_abi::OFFSET_UNKNOWN));
                    missing.push(format!(
                        "{}.{} (for {})",
                        f.struct_name, f.paths[0], f.serves
                    ));
                }
            }
        }
        Self { values, missing }
    }

    /// Nothing found: every exec fact stays null, and path orders decide on given paths only.
    pub fn none(reason: &str) -> Self {
        Self {
            values: FIELDS
                .iter()
                .map(|f| (f.key, sandwatch_probes_abi::OFFSET_UNKNOWN))
                .collect(),
            missing: vec![reason.to_owned()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little BTF blob written by hand, the way the kernel lays it out.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, size: u32) -> u32 {
            let name = self.string(name);
            let info = (kind << 24) | vlen | (u32::from(kflag) << 31);
            for w in [name, info, size] {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.header("", KIND_PTR, 0, false, to)
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.header(name, KIND_TYPEDEF, 0, false, to)
        }

        /// members: (name, type, bit offset, bitfield size).
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let id = self.header(name, kind, members.len() as u32, kflag, size);
            for &(n, ty, bits, bitfield) in members {
                let n = self.string(n);
                let off = if kflag { (bitfield << 24) | bits } else { bits };
                for w in [n, ty, off] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }

        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Btf {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let u64t = b.int("long long unsigned int", 8);
        let uid = b.typedef("uid_t", int);
        let kuid = b.composite(KIND_STRUCT, "", 4, &[("val", uid, 0, 0)]);
        let kuid_t = b.typedef("kuid_t", kuid);
        let cap = b.composite(KIND_STRUCT, "", 8, &[("val", u64t, 0, 0)]);
        let cap_t = b.typedef("kernel_cap_t", cap);
        let cred = b.composite(
            KIND_STRUCT,
            "cred",
            40,
            &[
                ("usage", int, 0, 0),
                ("cap_inheritable", cap_t, 64, 0),
                ("cap_permitted", cap_t, 128, 0),
                ("cap_effective", cap_t, 192, 0),
            ],
        );
        let cred_ptr = b.ptr(cred);
        // task_struct's fields inside an anonymous struct inside an anonymous union, as
        // randstruct kernels lay them out, plus a bitfield that must not be taken for a field.
        let inner = b.composite(
            KIND_STRUCT,
            "",
            16,
            &[("cred", cred_ptr, 0, 0), ("loginuid", kuid_t, 64, 0)],
        );
        let anon_union = b.composite(KIND_UNION, "", 16, &[("", inner, 0, 0)]);
        b.composite(
            KIND_STRUCT,
            "task_struct",
            48,
            &[
                ("state", int, 0, 0),
                ("flagbit", int, 33, 1),
                ("", anon_union, 128, 0),
            ],
        );
        Btf::parse(&b.finish()).unwrap()
    }

    #[test]
    fn members_are_found_through_anonymous_members_and_typedefs() {
        let btf = sample();
        assert_eq!(btf.field("task_struct", "cred"), Some((16, 8)));
        assert_eq!(btf.field("task_struct", "loginuid"), Some((24, 4)));
        assert_eq!(btf.field("task_struct", "loginuid.val"), Some((24, 4)));
        assert_eq!(btf.field("cred", "cap_effective"), Some((24, 8)));
        assert_eq!(btf.field("cred", "cap_inheritable.val"), Some((8, 8)));
        assert_eq!(btf.field("task_struct", "flagbit"), None, "bitfield");
        assert_eq!(btf.field("task_struct", "nope"), None);
        assert_eq!(btf.field("no_such_struct", "cred"), None);
    }

    #[test]
    fn missing_fields_are_reported_with_what_they_serve() {
        let found = FieldOffsets::find(&sample());
        let value = |key| found.values.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(value(settings::TASK_CRED), 16);
        assert_eq!(value(settings::CRED_CAP_PERMITTED), 16);
        assert_eq!(value(settings::TASK_LOGINUID), 24);
        assert_eq!(
            value(settings::TASK_SIGNAL),
            sandwatch_probes_abi::OFFSET_UNKNOWN
        );
        assert!(
            found
                .missing
                .iter()
                .any(|m| m.starts_with("task_struct.signal (for tty)")),
            "{:?}",
            found.missing
        );
        assert_eq!(found.values.len(), FIELDS.len());
    }

    #[test]
    fn truncated_or_foreign_blobs_are_refused() {
        assert!(Btf::parse(b"\x9f\xeb").is_err());
        assert!(Btf::parse(b"nope, not btf at all....").is_err());
        let mut blob = {
            let mut b = Builder::new();
            b.int("int", 4);
            b.finish()
        };
        blob.truncate(blob.len() - 3);
        assert!(Btf::parse(&blob).is_err());
    }

    /// The running kernel's own BTF: every field the probes read is there on the kernels
    /// sandwatch supports (Linux 5.15 and later with BTF; this test runs on one).
    #[test]
    fn the_running_kernel_has_every_field() {
        let btf = Btf::from_file(VMLINUX_BTF).expect("this kernel exposes its BTF");
        let found = FieldOffsets::find(&btf);
        assert!(found.missing.is_empty(), "missing: {:?}", found.missing);
        let (_, size) = btf.field("task_struct", "pid").unwrap();
        assert_eq!(size, 4);
    }
}
