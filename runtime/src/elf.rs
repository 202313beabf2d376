//! The one ELF fact `moat selftest` needs: does a program ask for a
//! dynamic loader (a `PT_INTERP` program header)? The probe runs in a
//! rootfs that holds nothing but itself, so a program that names a loader
//! cannot start there.

/// Program header type of the loader path.
const PT_INTERP: u32 = 3;

/// The loader a 64-bit little-endian ELF program names, `None` for a static
/// one, or why the bytes are not such a program.
pub fn interpreter(elf: &[u8]) -> Result<Option<String>, String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().map_err(|_| "short header")?);
    let phoff = usize::try_from(phoff).map_err(|_| "program header offset out of range")?;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    if phentsize < 56 {
        return Err(format!("program header size {phentsize} is too small"));
    }
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .filter(|&a| a.checked_add(56).is_some_and(|end| end <= elf.len()))
            .ok_or("program headers run past the end of the file")?;
        let p_type = u32::from_le_bytes(elf[at..at + 4].try_into().map_err(|_| "short")?);
        if p_type != PT_INTERP {
            continue;
        }
        let off = u64::from_le_bytes(elf[at + 8..at + 16].try_into().map_err(|_| "short")?);
        let size = u64::from_le_bytes(elf[at + 32..at + 40].try_into().map_err(|_| "short")?);
        let path = usize::try_from(off)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, s)| elf.get(o..o.checked_add(s)?))
            .map(|b| {
                String::from_utf8_lossy(b)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|| "(unreadable path)".to_string());
        return Ok(Some(path));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one program header of type `p_type`
    /// whose contents (at offset 120) are `payload`.
    fn elf_with(p_type: u32, payload: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 120];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&p_type.to_le_bytes());
        e[72..80].copy_from_slice(&120u64.to_le_bytes());
        e[96..104].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        e.extend_from_slice(payload);
        e
    }

    #[test]
    fn a_loader_path_is_found_and_a_static_program_has_none() {
        let dynamic = elf_with(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0");
        assert_eq!(
            interpreter(&dynamic).unwrap().as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(interpreter(&elf_with(1, b"")).unwrap(), None);
    }

    #[test]
    fn garbage_and_truncated_headers_are_errors_not_panics() {
        assert!(interpreter(b"#!/bin/sh\n").is_err());
        // 500 headers announced, one present (not the loader's).
        let mut e = elf_with(1, b"/x\0");
        e[0x38..0x3a].copy_from_slice(&500u16.to_le_bytes());
        assert!(interpreter(&e).is_err());
        let mut e = elf_with(PT_INTERP, b"/x\0");
        e[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            interpreter(&e).unwrap().as_deref(),
            Some("(unreadable path)")
        );
    }

    #[test]
    fn this_test_binary_is_read_without_error() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(interpreter(&me).is_ok());
    }
}
