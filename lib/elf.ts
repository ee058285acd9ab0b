import * as fs from 'fs';

/**
 * Why FILE cannot be a whole ELF shared object, or undefined when its headers hold together: the ELF
 * identification, and a file size that covers the program header table, every segment it describes and
 * the section header table. glibc's dlopen maps the segments without checking them against the file's
 * size, so a truncated file (a build or copy cut short) kills the process with SIGBUS instead of
 * failing. What lies inside the segments is not checked: dlopen reports that itself.
 */
export function elfDamage(file: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    return `cannot be read (${(err as Error).message})`;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const read = (offset: number, length: number): Buffer => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, fs.readSync(fd, buf, 0, length, offset));
    };
    const ident = read(0, 16);
    if (ident.length < 16 || ident.readUInt32BE(0) !== 0x7f454c46) return 'not an ELF file';
    if (![1, 2].includes(ident[4]) || ![1, 2].includes(ident[5])) return 'not an ELF file (unknown class or byte order)';
    const is64 = ident[4] === 2;
    const le = ident[5] === 1;
    const u16 = (b: Buffer, at: number) => (le ? b.readUInt16LE(at) : b.readUInt16BE(at));
    const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
    const u64 = (b: Buffer, at: number) => Number(le ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at));
    const word = is64 ? u64 : u32;
    const truncated = (needed: number) => `truncated: ${size} bytes of the ${needed} its ELF headers describe`;

    const headerSize = is64 ? 64 : 52;
    const header = read(0, headerSize);
    if (header.length < headerSize) return truncated(headerSize);
    const phoff = word(header, is64 ? 32 : 28);
    const shoff = word(header, is64 ? 40 : 32);
    const [phentsize, phnum, shentsize, shnum] = (is64 ? [54, 56, 58, 60] : [42, 44, 46, 48]).map((at) => u16(header, at));

    let needed = headerSize;
    const phEnd = phoff + phnum * phentsize;
    if (phnum > 0) {
      if (phentsize < (is64 ? 56 : 32)) return 'not an ELF file (program header entries too small)';
      if (phEnd > size) return truncated(phEnd);
      const table = read(phoff, phnum * phentsize);
      for (let i = 0; i < phnum; i++) {
        const ph = table.subarray(i * phentsize);
        const end = is64 ? u64(ph, 8) + u64(ph, 32) : u32(ph, 4) + u32(ph, 16); // p_offset + p_filesz
        needed = Math.max(needed, phEnd, end);
      }
    }
    // e_shnum 0 with a table: the count is in section 0 (extended numbering), which needs one entry at least.
    if (shoff > 0) needed = Math.max(needed, shoff + Math.max(shnum, 1) * shentsize);
    return needed > size ? truncated(needed) : undefined;
  } finally {
    fs.closeSync(fd);
  }
}
