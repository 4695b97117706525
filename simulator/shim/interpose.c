/* Linked into shim/bad/libvgpu-cuda-interpose.so only.
 *
 * Field shims exported loader/libc functions (dlopen, dlsym, ...) "to catch
 * the application loading libcuda".  When such a shim is in LD_PRELOAD, every
 * dlopen/dlsym of the process goes through it.  These wrappers forward to the
 * next definition (RTLD_NEXT), as the better field shims did; the forwarding
 * changes who the loader sees as the caller (RTLD_NEXT / $ORIGIN / namespace
 * decisions are made relative to the shim instead of the real caller), which
 * is what broke backend loading in the field.  The doctor flags such a shim
 * by its dynamic symbol table (PRELOAD_INTERPOSES_LOADER).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#define API __attribute__((visibility("default")))

typedef void *(*dlopen_fn)(const char *, int);
typedef void *(*dlsym_fn)(void *, const char *);

static dlsym_fn real_dlsym_fn(void)
{
    static dlsym_fn real;
    if (!real) {
        /* dlsym itself is interposed, so find the real one by version */
        real = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
        if (!real) real = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    }
    return real;
}

API void *dlsym(void *handle, const char *symbol)
{
    dlsym_fn real = real_dlsym_fn();
    return real ? real(handle, symbol) : NULL;
}

API void *dlopen(const char *file, int mode)
{
    static dlopen_fn real;
    if (!real) {
        dlsym_fn rs = real_dlsym_fn();
        if (rs) real = (dlopen_fn)rs(RTLD_NEXT, "dlopen");
    }
    return real ? real(file, mode) : NULL;
}
