#include "h5file.h"

#include <hdf5_hl.h>
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "savefile.h"

#define CHECKSUM_MAGIC "pelab-checksum 1\n"
static const unsigned char hdf5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *detail) {
    if (n == 0) snprintf(detail, 200, "%s", e->desc);
    return 0;
}

int h5_fail(char *err, size_t errlen, const char *fmt, ...) {
    char detail[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, detail);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (detail[0] && n >= 0 && (size_t)n < errlen) snprintf(err + n, errlen - n, " (HDF5: %s)", detail);
    H5Eclear2(H5E_DEFAULT);
    return -1;
}

int h5_set_scalar(hid_t loc, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1 : H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0) H5Aclose(attr);
    if (space >= 0) H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

// ----------------------------------------------------------------------------------------------
// the checksum record (h5file.h)

// Fills the user block at the start of a finished file's image with the record of everything
// after it.
static int write_checksum(char *image, size_t size, const char *path, char *err, size_t errlen) {
    char hex[65];
    if (text_sha256(image + H5_CHECKSUM_BLOCK, size - H5_CHECKSUM_BLOCK, hex) != 0) {
        snprintf(err, errlen, "cannot compute the checksum of %s", path);
        return -1;
    }
    memset(image, 0, H5_CHECKSUM_BLOCK);
    snprintf(image, H5_CHECKSUM_BLOCK, CHECKSUM_MAGIC "sha256 %s\nbytes %lld\n", hex,
             (long long)(size - H5_CHECKSUM_BLOCK));
    return 0;
}

// Parses the record in block: 0 with hex and bytes, or -1 when it is not one, byte for byte as
// write_checksum makes it (NUL padding included).
static int parse_checksum(const char *block, char hex[65], long long *bytes) {
    const char *p = block + strlen(CHECKSUM_MAGIC);
    if (memcmp(block, CHECKSUM_MAGIC, strlen(CHECKSUM_MAGIC)) != 0 || memcmp(p, "sha256 ", 7) != 0)
        return -1;
    p += 7;
    for (int i = 0; i < 64; i++, p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return -1;
        hex[i] = *p;
    }
    hex[64] = '\0';
    if (memcmp(p, "\nbytes ", 7) != 0) return -1;
    p += 7;
    *bytes = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++) *bytes = 10 * *bytes + (*p - '0');
    if (!digits || *p++ != '\n') return -1;
    for (; p < block + H5_CHECKSUM_BLOCK; p++)
        if (*p) return -1;
    return 0;
}

// 1 when path carries an intact checksum record, 0 when it is plain HDF5 without one (written by
// another tool), or -1 with err: unreadable, not HDF5, or damaged.
static int check_checksum(const char *path, const char *what, char *err, size_t errlen) {
    char block[H5_CHECKSUM_BLOCK];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    size_t n = fread(block, 1, sizeof block, f);
    fclose(f);
    if (n >= sizeof hdf5_signature && memcmp(block, hdf5_signature, sizeof hdf5_signature) == 0)
        return 0;
    char want[65], have[65];
    long long want_bytes, have_bytes;
    if (n < sizeof block || parse_checksum(block, want, &want_bytes) != 0) {
        if (n >= strlen(CHECKSUM_MAGIC) && memcmp(block, CHECKSUM_MAGIC, strlen(CHECKSUM_MAGIC)) == 0)
            snprintf(err, errlen, "%s %s is damaged: its checksum record (the first %d bytes) is "
                     "broken; restore the file from a copy or write it again",
                     what, path, H5_CHECKSUM_BLOCK);
        else
            snprintf(err, errlen, "%s is not an HDF5 file (corrupt, or not a %s)", path, what);
        return -1;
    }
    if (file_sha256(path, H5_CHECKSUM_BLOCK, have, &have_bytes, err, errlen) != 0) return -1;
    if (have_bytes != want_bytes || strcmp(have, want) != 0) {
        snprintf(err, errlen, "%s %s is damaged: %s; restore it from a copy or write it again", what,
                 path, have_bytes != want_bytes ? "it is not as long as when written (truncated "
                 "or appended to)" : "its contents do not match the checksum written with it");
        return -1;
    }
    return 1;
}

// The file is built in memory (HDF5's core driver) and reaches the disk through savefile_write:
// HDF5 itself never writes to disk, because a write failing inside it (a full disk, a file size
// limit) leaves the file open in a state that crashes the library when it shuts down at exit.
// The cost is one copy of the file in memory while it is saved.
int h5_write_atomic(const char *path, const char *what, H5Fill fill, const void *ctx, char *err,
                    size_t errlen) {
    h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 16 << 20, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return h5_fail(err, errlen, "cannot set up the %s %s in memory", what, path);
    }
    // The user block that will hold the checksum record, reserved before anything is written.
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl < 0 || H5Pset_userblock(fcpl, H5_CHECKSUM_BLOCK) < 0) {
        if (fcpl >= 0) H5Pclose(fcpl);
        H5Pclose(fapl);
        return h5_fail(err, errlen, "cannot set up the %s %s in memory", what, path);
    }
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (file < 0) return h5_fail(err, errlen, "cannot create the %s %s in memory", what, path);
    int rc = fill(file, ctx) < 0 || H5Fflush(file, H5F_SCOPE_LOCAL) < 0 ? -1 : 0;
    // The image libhdf5 hands out is the file after its user block (whose size the superblock
    // records): the file on disk is the checksum record, then the image.
    ssize_t size = rc ? -1 : H5Fget_file_image(file, NULL, 0);
    char *image = size > 0 ? malloc(H5_CHECKSUM_BLOCK + (size_t)size) : NULL;
    if (!image || H5Fget_file_image(file, image + H5_CHECKSUM_BLOCK, (size_t)size) != size) rc = -1;
    if (rc) h5_fail(err, errlen, "cannot write %s %s%s", what, path,
                    size > 0 && !image ? " (out of memory for its image)" : "");
    H5Fclose(file);
    size_t total = H5_CHECKSUM_BLOCK + (size_t)(size > 0 ? size : 0);
    if (rc == 0) rc = write_checksum(image, total, path, err, errlen);
    if (rc == 0) rc = savefile_write(path, what, image, total, err, errlen);
    free(image);
    return rc;
}

hid_t h5_open_format(const char *path, const char *what, const char *format, int version,
                     char *err, size_t errlen) {
    h5_quiet();
    int sealed = check_checksum(path, what, err, errlen);
    if (sealed < 0) return -1;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        h5_fail(err, errlen, "cannot read %s; the file is damaged", path);
        return -1;
    }
    char *found = NULL;
    int found_version = 0;
    if (h5_get_string_attr(file, "format", 64, &found) != 0 || strcmp(found, format) != 0) {
        snprintf(err, errlen, "%s is an HDF5 file but not a pelab %s (no format attribute \"%s\")",
                 path, what, format);
    } else if (h5_get_number_attr(file, "version", H5T_NATIVE_INT, &found_version) < 0) {
        snprintf(err, errlen, "%s has no version attribute; the %s is damaged", path, what);
    } else if (found_version != version) {
        snprintf(err, errlen, "%s is a version %d %s; this build reads version %d", path,
                 found_version, what, version);
    } else {
        // Once per file, as a run reads its checkpoint's config before the checkpoint itself.
        static char noted[4096];
        if (!sealed && strcmp(noted, path) != 0) {
            fprintf(stderr, "note: %s %s has no pelab checksum (written by another tool?); "
                    "reading it without one\n", what, path);
            snprintf(noted, sizeof noted, "%s", path);
        }
        free(found);
        return file;
    }
    free(found);
    H5Eclear2(H5E_DEFAULT);
    H5Fclose(file);
    return -1;
}

// ----------------------------------------------------------------------------------------------
// reading values: shape and type first, so that no read writes past what it was given

// The string type to read a string of type `file_type` with: a variable-length one (char *) in
// its character set, or the fixed-length type itself. -1 when it is not a string type, or a
// variable-length one of characters wider than a byte (a damaged type: libhdf5 allocates and
// converts that width per character, for minutes).
static hid_t string_memtype(hid_t file_type, int *variable) {
    if (H5Tget_class(file_type) != H5T_STRING) return -1;
    *variable = H5Tis_variable_str(file_type) > 0;
    if (!*variable) return H5Tcopy(file_type);
    hid_t base = H5Tget_super(file_type);
    size_t width = base < 0 ? 0 : H5Tget_size(base);
    if (base >= 0) H5Tclose(base);
    if (width != 1) return -1;
    hid_t mem = H5Tcopy(H5T_C_S1);
    if (mem >= 0 && (H5Tset_size(mem, H5T_VARIABLE) < 0 ||
                     H5Tset_cset(mem, H5Tget_cset(file_type)) < 0)) {
        H5Tclose(mem);
        return -1;
    }
    return mem;
}

// A copy of the text of `len` bytes at p, or NULL when it is longer than max_len or holds a NUL
// before its padding: fixed-length strings are padded with NULs (or spaces, kept).
static char *copy_text(const char *p, size_t len, size_t max_len) {
    size_t n = strnlen(p, len);
    for (size_t i = n; i < len; i++)
        if (p[i]) return NULL;
    char *text = n <= max_len ? malloc(n + 1) : NULL;
    if (text) memcpy(text, p, n), text[n] = '\0';
    return text;
}

// ----------------------------------------------------------------------------------------------
// the global heap under variable-length strings
//
// Variable-length strings live in the file's global heap, and libhdf5 does not survive damage
// there: an object that reaches past its collection is copied out of bounds. So before it
// reads a dataset of them, every reference is checked on disk (HDF5 file format, "Global Heap"):
// the dataset's raw data (contiguous, as h5py and pelab store it) holds per string a 4-byte
// length, a collection address and a 4-byte object index; a collection is "GCOL", version 1,
// 3 reserved bytes, its size, then objects (2-byte index, 2-byte reference count, 4 reserved
// bytes, size, data padded to 8 bytes; index 0 is the free space that ends it). Every object of
// each collection named must lie inside it, the collection inside the file, and the named
// object must be there with exactly the string's length.

typedef struct {
    FILE *f;
    unsigned long long size, base;  // file bytes; where HDF5's addresses start (the user block)
    size_t sizeof_addr, sizeof_size;
    unsigned long long collection;  // the collection last checked (0: none)...
    unsigned long long *object_size;  // ...its objects' sizes by index (UINT64_MAX: none)
} HeapCheck;

// The little-endian unsigned integer of n bytes at offset `at` of the file.
static int read_uint(HeapCheck *h, unsigned long long at, size_t n, unsigned long long *v) {
    unsigned char b[8];
    if (n > 8 || at > h->size || n > h->size - at || fseeko(h->f, (off_t)at, SEEK_SET) != 0 ||
        fread(b, 1, n, h->f) != n)
        return -1;
    *v = 0;
    for (size_t i = n; i-- > 0;) *v = *v << 8 | b[i];
    return 0;
}

// Walks the collection at HDF5 address addr, recording its objects' sizes. 0, or -1.
static int check_collection(HeapCheck *h, unsigned long long addr) {
    unsigned char head[8];
    unsigned long long at = h->base + addr, csize, pos = 8 + h->sizeof_size;
    if (addr > h->size || at > h->size || fseeko(h->f, (off_t)at, SEEK_SET) != 0 ||
        fread(head, 1, 8, h->f) != 8 || memcmp(head, "GCOL\1", 5) != 0 ||
        read_uint(h, at + 8, h->sizeof_size, &csize) != 0 || csize < pos || csize > h->size - at)
        return -1;
    for (int i = 0; i < 65536; i++) h->object_size[i] = UINT64_MAX;
    unsigned long long header = 8 + h->sizeof_size;  // of an object
    while (pos + header <= csize) {
        unsigned long long index, size;
        if (read_uint(h, at + pos, 2, &index) != 0 ||
            read_uint(h, at + pos + 8, h->sizeof_size, &size) != 0)
            return -1;
        if (index == 0) return size <= csize - pos ? 0 : -1;  // the free space: the rest
        unsigned long long need = size > csize ? csize + 1 : header + ((size + 7) & ~7ull);
        if (need > csize - pos || h->object_size[index] != UINT64_MAX) return -1;
        h->object_size[index] = size;
        pos += need;
    }
    return 0;  // less than an object header left: libhdf5 takes it as free space
}

// Checks the raw references of the variable-length string dataset `set` of n strings. 0, or -1.
static int check_heap_references(hid_t set, long long n) {
    char path[4096];
    hid_t file = H5Iget_file_id(set), fcpl = -1, dcpl = H5Dget_create_plist(set);
    hsize_t userblock = 0;
    HeapCheck h = {0};
    haddr_t offset = H5Dget_offset(set);
    int rc = -1;
    if (dcpl < 0 || H5Pget_layout(dcpl) != H5D_CONTIGUOUS || offset == HADDR_UNDEF ||
        H5Fget_name(set, path, sizeof path) <= 0 || (size_t)H5Fget_name(set, NULL, 0) >= sizeof path ||
        file < 0 || (fcpl = H5Fget_create_plist(file)) < 0 ||
        H5Pget_userblock(fcpl, &userblock) < 0 ||
        H5Pget_sizes(fcpl, &h.sizeof_addr, &h.sizeof_size) < 0 || h.sizeof_addr > 8 ||
        h.sizeof_size > 8 || !(h.f = fopen(path, "rb")) || fseeko(h.f, 0, SEEK_END) != 0 ||
        !(h.object_size = malloc(65536 * sizeof *h.object_size)))
        goto done;
    h.size = (unsigned long long)ftello(h.f);
    h.base = userblock;
    size_t ref = 4 + h.sizeof_addr + 4;
    if (offset > h.size || (unsigned long long)n > (h.size - offset) / ref) goto done;
    rc = 0;
    for (long long i = 0; i < n && rc == 0; i++) {
        unsigned long long at = offset + (unsigned long long)i * ref, len, addr, index;
        rc = read_uint(&h, at, 4, &len) || read_uint(&h, at + 4, h.sizeof_addr, &addr) ||
             read_uint(&h, at + 4 + h.sizeof_addr, 4, &index);
        if (rc || addr == 0) continue;  // no address: an empty (or NULL) string
        if (addr != h.collection) {
            h.collection = 0;
            if ((rc = check_collection(&h, addr))) break;
            h.collection = addr;
        }
        rc = index == 0 || index > 65535 || h.object_size[index] != len ? -1 : 0;
    }
done:
    free(h.object_size);
    if (h.f) fclose(h.f);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (file >= 0) H5Fclose(file);
    return rc;
}

// The strings of attribute or dataset `obj` (is_attr), `count` of them, at most max_len bytes
// each, as malloc'd copies in out[0..count). 0, or -1.
static int read_strings(hid_t obj, int is_attr, hid_t space, long long count, size_t max_len,
                        char **out) {
    hid_t file_type = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    int variable = 0;
    hid_t mem = file_type < 0 ? -1 : string_memtype(file_type, &variable);
    size_t size = mem < 0 || variable ? sizeof(char *) : H5Tget_size(mem);
    void *buf = NULL;
    int rc = -1;
    // Fixed-length strings are at most max_len bytes of text plus padding: no bigger buffer.
    if (mem >= 0 && size > 0 && (variable || size <= max_len + 1) &&
        (!variable || is_attr || check_heap_references(obj, count) == 0) &&
        (size_t)count <= SIZE_MAX / size && (buf = calloc((size_t)count ? (size_t)count : 1, size)) &&
        (is_attr ? H5Aread(obj, mem, buf) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)) >= 0) {
        rc = 0;
        for (long long i = 0; i < count; i++) out[i] = NULL;
        for (long long i = 0; i < count && rc == 0; i++) {
            const char *p = variable ? ((char **)buf)[i] : (char *)buf + (size_t)i * size;
            out[i] = !p ? NULL : copy_text(p, variable ? strnlen(p, max_len + 1) : size, max_len);
            if (!out[i]) rc = -1;
        }
        for (long long i = 0; rc != 0 && i < count; i++) free(out[i]), out[i] = NULL;
        if (variable) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, buf);
    }
    free(buf);
    if (mem >= 0) H5Tclose(mem);
    if (file_type >= 0) H5Tclose(file_type);
    return rc;
}

int h5_get_string_attr(hid_t loc, const char *name, size_t max_len, char **text) {
    *text = NULL;
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = attr < 0 ? -1 : H5Aget_space(attr);
    int rc = space >= 0 && H5Sget_simple_extent_npoints(space) == 1
                 ? read_strings(attr, 1, space, 1, max_len, text)
                 : -1;
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

int h5_get_number_attr(hid_t loc, const char *name, hid_t mem_type, void *value) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = attr < 0 ? -1 : H5Aget_space(attr);
    hid_t type = attr < 0 ? -1 : H5Aget_type(attr);
    int rc = space >= 0 && type >= 0 && H5Sget_simple_extent_npoints(space) == 1 &&
                     H5Tget_class(type) == H5Tget_class(mem_type) &&
                     H5Aread(attr, mem_type, value) >= 0
                 ? 0
                 : -1;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

long long h5_get_strings(hid_t loc, const char *name, long long max_n, size_t max_len,
                         char ***strings) {
    *strings = NULL;
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t set = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t space = set < 0 ? -1 : H5Dget_space(set);
    long long n = space < 0 || H5Sget_simple_extent_ndims(space) != 1
                      ? -1
                      : (long long)H5Sget_simple_extent_npoints(space);
    if (n < 0 || n > max_n || !(*strings = calloc(n ? (size_t)n : 1, sizeof **strings)) ||
        read_strings(set, 0, space, n, max_len, *strings) != 0) {
        free(*strings);
        *strings = NULL;
        n = -1;
    }
    if (space >= 0) H5Sclose(space);
    if (set >= 0) H5Dclose(set);
    H5Eclear2(H5E_DEFAULT);
    return n;
}

void h5_free_strings(char **strings, long long n) {
    for (long long i = 0; strings && i < n; i++) free(strings[i]);
    free(strings);
}
