/* Reference CUDA driver API shim (stands in for libcuda.so.1).
 *
 * One (or VGPU_SIM_DEVICE_COUNT) simulated "vH100" device, described by
 * VGPU_SIM_* environment variables, read when cuInit is called.  There is no
 * constructor and no destructor: loading this library does nothing at all.
 *
 * Build variants (see simulator/build.sh):
 *   -DNO_CUINIT           no cuInit export (a broken shim build)
 *   -DFAKE_NVIDIA_DRIVER  a "real NVIDIA driver" look-alike whose cuInit fails
 *                         with CUDA_ERROR_NO_DEVICE, as the real libcuda does
 *                         in a guest without the NVIDIA kernel module.
 *   -DCUINIT_ERROR=999    cuInit returns that CUresult (999 = CUDA_ERROR_UNKNOWN:
 *                         a shim that cannot reach its host side)
 *   -DZERO_DEVICES        cuInit succeeds, cuDeviceGetCount reports 0
 *   -DVGPU_DEFAULT_INIT_DELAY_MS='"600000"'  cuInit sleeps that long unless
 *                         VGPU_SIM_INIT_DELAY_MS says otherwise (nanosleep:
 *                         SIGKILL ends it)
 *
 * CUDA_VISIBLE_DEVICES is honoured inside cuInit the way the real driver does
 * it: a comma separated list of ordinals or GPU-UUID prefixes, parsing stops at
 * the first invalid entry ("" and "-1" hide everything).
 *
 * Exports every default required symbol of module_utils/vgpu_elf.py
 * (SHIM_CONSUMERS: Ollama's discovery and native probe, libggml-cuda.so's
 * undefined references, the CUDA runtime's entry points), among them:
 *   - the virtual memory management calls libggml-cuda.so links
 *     (ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:283-293,539-596@v0.13.5),
 *     on a host-memory model: cuMemAddressReserve reserves address space
 *     (mmap PROT_NONE), cuMemCreate makes a "physical" allocation (a memfd of
 *     that size, counted against the device's free memory), cuMemMap maps it
 *     into a reservation, cuMemSetAccess mprotects, cuMemUnmap /
 *     cuMemRelease / cuMemAddressFree undo; granularity 2 MiB; device
 *     attribute 102 (VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) answers 1.
 *   - cuGetExportTable, which the CUDA runtime needs (NVIDIA CUDA Driver API
 *     docs, "Driver Entry Point Access"; no in-repo evidence): it exists, but
 *     always fails with CUDA_ERROR_NOT_SUPPORTED (801) - a shim cannot provide
 *     NVIDIA's private export tables, so the real libcudart will not run on it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "cuda_min.h"
#include "vgpu_config.h"

#define API __attribute__((visibility("default")))

#ifdef FAKE_NVIDIA_DRIVER
/* Strings a real driver build carries; checked by nothing here, present so that
 * tools looking at the file (strings, size, SONAME) see an NVIDIA library. */
__attribute__((used)) static const char nv_ident[] =
    "NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\0"
    "libcuda.so.535.104.05\0/dev/nvidiactl\0/dev/nvidia-uvm\0nvidia\0"
    "NVIDIA: could not open the device file %s (%s).\0"
    "NVIDIA Corporation\0";
#undef VGPU_DEFAULT_DRIVER
#define VGPU_DEFAULT_DRIVER 12020
#endif

static struct vgpu_config cfg;
static int initialized;
static int visible_count;
static int visible_map[VGPU_MAX_DEVICES];

struct CUctx_st { int magic; CUdevice dev; };
#define CTX_MAGIC 0x76677075
static __thread CUcontext current_ctx;
static struct CUctx_st primary_ctx[VGPU_MAX_DEVICES];

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Apply CUDA_VISIBLE_DEVICES to the physical devices. */
static void compute_visible(void)
{
    const char *env = getenv("CUDA_VISIBLE_DEVICES");
    int i;
    visible_count = 0;
    if (env == NULL) {
        for (i = 0; i < cfg.device_count; i++) visible_map[visible_count++] = i;
        return;
    }
    while (visible_count < VGPU_MAX_DEVICES) {
        char tok[128];
        size_t n = strcspn(env, ",");
        const char *p;
        int idx = -1, dup = 0;
        if (n >= sizeof(tok)) break;
        memcpy(tok, env, n);
        tok[n] = '\0';
        p = tok;
        while (*p == ' ' || *p == '\t') p++;
        {   /* trim right */
            char *e = tok + strlen(tok);
            while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
        }
        if (*p == '\0') break;
        if (isdigit((unsigned char)*p)) {
            const char *q = p;
            while (isdigit((unsigned char)*q)) q++;
            if (*q != '\0') break;
            idx = atoi(p);
            if (idx >= cfg.device_count) break;
        } else if (strncmp(p, "GPU-", 4) == 0) {
            int matches = 0;
            for (i = 0; i < cfg.device_count; i++) {
                unsigned char u[16];
                char s[64];
                vgpu_device_uuid(&cfg, i, u);
                vgpu_format_uuid(u, s, sizeof(s));
                if (strncasecmp(s, p, strlen(p)) == 0) { matches++; idx = i; }
            }
            if (matches != 1) break;
        } else {
            break;
        }
        for (i = 0; i < visible_count; i++) if (visible_map[i] == idx) dup = 1;
        if (dup) break;
        visible_map[visible_count++] = idx;
        if (env[n] == '\0') break;
        env += n + 1;
    }
}

static int valid_dev(CUdevice dev)
{
    return initialized && dev >= 0 && dev < visible_count;
}

#ifndef NO_CUINIT
API CUresult cuInit(unsigned int flags)
{
    struct vgpu_config c;
    vgpu_load_config(&c);
    if (c.init_delay_ms > 0) sleep_ms(c.init_delay_ms);
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
#if defined(FAKE_NVIDIA_DRIVER)
    /* The real driver cannot reach /dev/nvidiactl without its kernel module. */
    return CUDA_ERROR_NO_DEVICE;
#elif defined(CUINIT_ERROR)
    return CUINIT_ERROR;
#else
    cfg = c;
    compute_visible();
#ifdef ZERO_DEVICES
    visible_count = 0;
    initialized = 1;
    return CUDA_SUCCESS;
#endif
    if (visible_count == 0) { initialized = 0; return CUDA_ERROR_NO_DEVICE; }
    initialized = 1;
    return CUDA_SUCCESS;
#endif
}
#endif

API CUresult cuDriverGetVersion(int *version)
{
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    *version = vgpu_parse_driver(vgpu_env("VGPU_SIM_DRIVER", "")) ?: VGPU_DEFAULT_DRIVER;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetCount(int *count)
{
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    *count = visible_count;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= visible_count) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
    switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *pi = cfg.cc_major; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *pi = cfg.cc_minor; break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = 1024; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *pi = 49152; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *pi = 32; break;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: *pi = 1980000; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *pi = 132; break;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: *pi = 0; break;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: *pi = (int)cfg.pci_bus; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: *pi = (int)cfg.pci_dev + visible_map[dev]; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: *pi = (int)cfg.pci_domain; break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: *pi = 2619000; break;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: *pi = 5120; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: *pi = 233472; break;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: *pi = 1; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *pi = 232448; break;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: *pi = 1; break;
    default: *pi = 0; break;
    }
    return CUDA_SUCCESS;
}

API CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
    if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    *major = cfg.cc_major;
    *minor = cfg.cc_minor;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", cfg.name);
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    vgpu_device_uuid(&cfg, visible_map[dev], (unsigned char *)uuid->bytes);
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    return cuDeviceGetUuid(uuid, dev);
}

API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = (size_t)cfg.total_bytes;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    if (!pciBusId || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    vgpu_format_pci(&cfg, visible_map[dev], pciBusId, (size_t)len);
    return CUDA_SUCCESS;
}

/* ---- contexts ---------------------------------------------------------- */

static CUresult ctx_create(CUcontext *pctx, CUdevice dev)
{
    struct CUctx_st *c;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    {
        /* VGPU_SIM_CTX_ERROR=<CUresult>: the host side refuses contexts (e.g. 2, out of memory on the
         * host GPU); initialisation and enumeration still succeed */
        long refused = atol(vgpu_env("VGPU_SIM_CTX_ERROR", "0"));
        if (refused > 0) return (CUresult)refused;
    }
    c = calloc(1, sizeof(*c));
    if (!c) return CUDA_ERROR_OUT_OF_MEMORY;
    c->magic = CTX_MAGIC;
    c->dev = dev;
    *pctx = c;
    current_ctx = c;
    return CUDA_SUCCESS;
}

API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    (void)flags;
    return ctx_create(pctx, dev);
}

API CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams,
                            unsigned int flags, CUdevice dev)
{
    (void)paramsArray; (void)numParams; (void)flags;
    return ctx_create(pctx, dev);
}

API CUresult cuCtxCreate_v4(CUcontext *pctx, void *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    (void)ctxCreateParams; (void)flags;
    return ctx_create(pctx, dev);
}

API CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!ctx || ctx->magic != CTX_MAGIC) return CUDA_ERROR_INVALID_CONTEXT;
    if (current_ctx == ctx) current_ctx = NULL;
    if (ctx >= primary_ctx && ctx < primary_ctx + VGPU_MAX_DEVICES) return CUDA_SUCCESS;
    ctx->magic = 0;
    free(ctx);
    return CUDA_SUCCESS;
}

API CUresult cuCtxDestroy(CUcontext ctx)
{
    return cuCtxDestroy_v2(ctx);
}

API CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    *pctx = current_ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSetCurrent(CUcontext ctx)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ctx && ctx->magic != CTX_MAGIC) return CUDA_ERROR_INVALID_CONTEXT;
    current_ctx = ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    return cuCtxSetCurrent(ctx);
}

API CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (pctx) *pctx = current_ctx;
    current_ctx = NULL;
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetDevice(CUdevice *dev)
{
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!current_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    *dev = current_ctx->dev;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSynchronize(void)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    return current_ctx ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    primary_ctx[dev].magic = CTX_MAGIC;
    primary_ctx[dev].dev = dev;
    *pctx = &primary_ctx[dev];
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    return valid_dev(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

API CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
    return cuDevicePrimaryCtxRelease_v2(dev);
}

API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (flags) *flags = 0;
    if (active) *active = primary_ctx[dev].magic == CTX_MAGIC;
    return CUDA_SUCCESS;
}

/* ---- virtual memory management (host-memory model) --------------------- */

#define VMM_GRANULARITY ((size_t)2 << 20)   /* 2 MiB, minimum and recommended */
#define VMM_MAX_RESERVATIONS 64
#define VMM_MAX_ALLOCATIONS 4096
#define VMM_MAX_MAPPINGS 4096

struct vmm_reservation { uintptr_t base; size_t size; };
/* A handle is slot index + 1. Released while mapped, a slot lives on (not usable as a handle) until its
 * last mapping is unmapped, like the driver's physical memory. */
struct vmm_allocation { int used, released, maps, fd; size_t size; };
struct vmm_mapping { uintptr_t base; size_t size; int alloc; };

static struct vmm_reservation vmm_res[VMM_MAX_RESERVATIONS];
static struct vmm_allocation vmm_alloc[VMM_MAX_ALLOCATIONS];
static struct vmm_mapping vmm_map[VMM_MAX_MAPPINGS];
static size_t vmm_bytes;        /* physical bytes held: counted against the device's free memory */
static int vmm_lock_word;

static void vmm_lock(void)
{
    while (__atomic_exchange_n(&vmm_lock_word, 1, __ATOMIC_ACQUIRE)) sched_yield();
}

static void vmm_unlock(void)
{
    __atomic_store_n(&vmm_lock_word, 0, __ATOMIC_RELEASE);
}

static int vmm_aligned(uintptr_t v) { return v % VMM_GRANULARITY == 0; }

static int vmm_prop_ok(const CUmemAllocationProp *prop)
{
    return prop->type == CU_MEM_ALLOCATION_TYPE_PINNED && prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
}

/* the reservation holding [base, base+size), or NULL */
static struct vmm_reservation *vmm_find_res(uintptr_t base, size_t size)
{
    int i;
    for (i = 0; i < VMM_MAX_RESERVATIONS; i++)
        if (vmm_res[i].size && base >= vmm_res[i].base && size <= vmm_res[i].size &&
            base - vmm_res[i].base <= vmm_res[i].size - size)
            return &vmm_res[i];
    return NULL;
}

/* bytes of [base, base+size) covered by mappings; *partial set when a mapping sticks out of the range */
static size_t vmm_covered(uintptr_t base, size_t size, int *partial)
{
    size_t covered = 0;
    int i;
    *partial = 0;
    for (i = 0; i < VMM_MAX_MAPPINGS; i++) {
        uintptr_t b = vmm_map[i].base, e = b + vmm_map[i].size;
        if (!vmm_map[i].size || e <= base || b >= base + size) continue;
        if (b < base || e > base + size) *partial = 1;
        covered += (e < base + size ? e : base + size) - (b > base ? b : base);
    }
    return covered;
}

static void vmm_put_alloc(int a)
{
    if (vmm_alloc[a].released && vmm_alloc[a].maps == 0) {
        vmm_bytes -= vmm_alloc[a].size;
        memset(&vmm_alloc[a], 0, sizeof(vmm_alloc[a]));
    }
}

API CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                           CUmemAllocationGranularity_flags option)
{
    if (!granularity || !prop) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!vmm_prop_ok(prop)) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_dev(prop->location.id)) return CUDA_ERROR_INVALID_DEVICE;
    if (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
        return CUDA_ERROR_INVALID_VALUE;
    *granularity = VMM_GRANULARITY;
    return CUDA_SUCCESS;
}

API CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                         unsigned long long flags)
{
    int i, fd;
    if (!handle || !prop || flags != 0 || size == 0 || !vmm_aligned(size)) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!vmm_prop_ok(prop)) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_dev(prop->location.id)) return CUDA_ERROR_INVALID_DEVICE;
    vmm_lock();
    if (size > (size_t)cfg.free_bytes || vmm_bytes > (size_t)cfg.free_bytes - size) {
        vmm_unlock();
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    for (i = 0; i < VMM_MAX_ALLOCATIONS && vmm_alloc[i].used; i++)
        ;
    if (i == VMM_MAX_ALLOCATIONS) { vmm_unlock(); return CUDA_ERROR_OUT_OF_MEMORY; }
    fd = memfd_create("vgpu-vmm", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0) close(fd);
        vmm_unlock();
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    vmm_alloc[i].used = 1;
    vmm_alloc[i].released = 0;
    vmm_alloc[i].maps = 0;
    vmm_alloc[i].fd = fd;
    vmm_alloc[i].size = size;
    vmm_bytes += size;
    *handle = (CUmemGenericAllocationHandle)i + 1;
    vmm_unlock();
    return CUDA_SUCCESS;
}

/* slot of a live (created, not yet released) handle, or -1 */
static int vmm_handle(CUmemGenericAllocationHandle handle)
{
    if (handle == 0 || handle > VMM_MAX_ALLOCATIONS) return -1;
    if (!vmm_alloc[handle - 1].used || vmm_alloc[handle - 1].released) return -1;
    return (int)(handle - 1);
}

API CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    int a;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    vmm_lock();
    a = vmm_handle(handle);
    if (a < 0) { vmm_unlock(); return CUDA_ERROR_INVALID_VALUE; }
    close(vmm_alloc[a].fd);    /* the mappings keep the memory until they are unmapped */
    vmm_alloc[a].fd = -1;
    vmm_alloc[a].released = 1;
    vmm_put_alloc(a);
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                 unsigned long long flags)
{
    size_t align = alignment > VMM_GRANULARITY ? alignment : VMM_GRANULARITY;
    uintptr_t base, start;
    void *p;
    int i;
    (void)addr;   /* a hint, as for the driver */
    if (!ptr || flags != 0 || size == 0 || !vmm_aligned(size) || (alignment & (alignment - 1)) != 0 ||
        size > SIZE_MAX - align)
        return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    vmm_lock();
    for (i = 0; i < VMM_MAX_RESERVATIONS && vmm_res[i].size; i++)
        ;
    if (i == VMM_MAX_RESERVATIONS) { vmm_unlock(); return CUDA_ERROR_OUT_OF_MEMORY; }
    /* over-reserve, then trim to an aligned range of exactly size bytes */
    p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { vmm_unlock(); return CUDA_ERROR_OUT_OF_MEMORY; }
    base = (uintptr_t)p;
    start = (base + align - 1) & ~(uintptr_t)(align - 1);
    if (start > base) munmap(p, start - base);
    if (start + size < base + size + align) munmap((void *)(start + size), base + size + align - start - size);
    vmm_res[i].base = start;
    vmm_res[i].size = size;
    *ptr = (CUdeviceptr)start;
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    struct vmm_reservation *r;
    int partial;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    vmm_lock();
    r = vmm_find_res((uintptr_t)ptr, size);
    /* the whole reservation, with nothing mapped in it any more */
    if (!r || r->base != (uintptr_t)ptr || r->size != size || vmm_covered(r->base, r->size, &partial)) {
        vmm_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    munmap((void *)r->base, r->size);
    r->base = 0;
    r->size = 0;
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                      unsigned long long flags)
{
    int a, i, partial;
    if (flags != 0 || size == 0 || !vmm_aligned((uintptr_t)ptr) || !vmm_aligned(size) || !vmm_aligned(offset))
        return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    vmm_lock();
    a = vmm_handle(handle);
    if (a < 0 || offset > vmm_alloc[a].size || size > vmm_alloc[a].size - offset ||
        !vmm_find_res((uintptr_t)ptr, size) || vmm_covered((uintptr_t)ptr, size, &partial)) {
        vmm_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (i = 0; i < VMM_MAX_MAPPINGS && vmm_map[i].size; i++)
        ;
    if (i == VMM_MAX_MAPPINGS ||
        mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, vmm_alloc[a].fd, (off_t)offset)
            == MAP_FAILED) {
        vmm_unlock();
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    vmm_map[i].base = (uintptr_t)ptr;
    vmm_map[i].size = size;
    vmm_map[i].alloc = a;
    vmm_alloc[a].maps++;
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    int prot = PROT_NONE, partial;
    size_t i;
    if (!desc || count == 0 || size == 0 || !vmm_aligned((uintptr_t)ptr) || !vmm_aligned(size))
        return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    for (i = 0; i < count; i++) {
        if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_INVALID_VALUE;
        if (!valid_dev(desc[i].location.id)) return CUDA_ERROR_INVALID_DEVICE;
        switch (desc[i].flags) {
        case CU_MEM_ACCESS_FLAGS_PROT_NONE: break;
        case CU_MEM_ACCESS_FLAGS_PROT_READ: prot |= PROT_READ; break;
        case CU_MEM_ACCESS_FLAGS_PROT_READWRITE: prot |= PROT_READ | PROT_WRITE; break;
        default: return CUDA_ERROR_INVALID_VALUE;
        }
    }
    vmm_lock();
    /* every byte of the range must be mapped */
    if (vmm_covered((uintptr_t)ptr, size, &partial) != size ||
        mprotect((void *)(uintptr_t)ptr, size, prot) != 0) {
        vmm_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    int i, partial;
    if (size == 0 || !vmm_aligned((uintptr_t)ptr) || !vmm_aligned(size)) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    vmm_lock();
    /* whole mappings only, and all of the range mapped (one or several mappings) */
    if (!vmm_find_res((uintptr_t)ptr, size) || vmm_covered((uintptr_t)ptr, size, &partial) != size || partial) {
        vmm_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    /* back to reserved, inaccessible address space */
    if (mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
             -1, 0) == MAP_FAILED) {
        vmm_unlock();
        return CUDA_ERROR_UNKNOWN;
    }
    for (i = 0; i < VMM_MAX_MAPPINGS; i++) {
        if (vmm_map[i].size && vmm_map[i].base >= (uintptr_t)ptr && vmm_map[i].base < (uintptr_t)ptr + size) {
            int a = vmm_map[i].alloc;
            memset(&vmm_map[i], 0, sizeof(vmm_map[i]));
            vmm_alloc[a].maps--;
            vmm_put_alloc(a);
        }
    }
    vmm_unlock();
    return CUDA_SUCCESS;
}

API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!current_ctx) return CUDA_ERROR_INVALID_CONTEXT;
    vmm_lock();
    *free_bytes = (size_t)cfg.free_bytes > vmm_bytes ? (size_t)cfg.free_bytes - vmm_bytes : 0;
    vmm_unlock();
    *total_bytes = (size_t)cfg.total_bytes;
    return CUDA_SUCCESS;
}

/* ---- the runtime's private interfaces ---------------------------------- */

/* The CUDA runtime asks the driver for private export tables (NVIDIA CUDA Driver API docs, "Driver Entry
 * Point Access"; no in-repo evidence). Their layout is NVIDIA's and undocumented: this shim cannot
 * provide them and says so, rather than hand out a table that would crash the caller. */
API CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    if (!ppExportTable || !pExportTableId) return CUDA_ERROR_INVALID_VALUE;
    *ppExportTable = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* ---- errors ------------------------------------------------------------ */

static const struct { CUresult code; const char *name, *text; } errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_INSUFFICIENT_DRIVER, "CUDA_ERROR_INSUFFICIENT_DRIVER",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
     "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

API CUresult cuGetErrorString(CUresult error, const char **pStr)
{
    size_t i;
    if (!pStr) return CUDA_ERROR_INVALID_VALUE;
    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == error) { *pStr = errors[i].text; return CUDA_SUCCESS; }
    *pStr = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuGetErrorName(CUresult error, const char **pStr)
{
    size_t i;
    if (!pStr) return CUDA_ERROR_INVALID_VALUE;
    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == error) { *pStr = errors[i].name; return CUDA_SUCCESS; }
    *pStr = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

/* ---- cuGetProcAddress -------------------------------------------------- */

#define F(n) (void *)(n)
static const struct { const char *name; int min_version; void *fn; } procs[] = {
#ifndef NO_CUINIT
    {"cuInit", 0, F(cuInit)},
#endif
    {"cuDriverGetVersion", 0, F(cuDriverGetVersion)},
    {"cuDeviceGetCount", 0, F(cuDeviceGetCount)},
    {"cuDeviceGet", 0, F(cuDeviceGet)},
    {"cuDeviceGetAttribute", 0, F(cuDeviceGetAttribute)},
    {"cuDeviceComputeCapability", 0, F(cuDeviceComputeCapability)},
    {"cuDeviceGetName", 0, F(cuDeviceGetName)},
    {"cuDeviceGetUuid", 11040, F(cuDeviceGetUuid_v2)},
    {"cuDeviceGetUuid", 0, F(cuDeviceGetUuid)},
    {"cuDeviceGetUuid_v2", 0, F(cuDeviceGetUuid_v2)},
    {"cuDeviceTotalMem", 0, F(cuDeviceTotalMem_v2)},
    {"cuDeviceTotalMem_v2", 0, F(cuDeviceTotalMem_v2)},
    {"cuDeviceGetPCIBusId", 0, F(cuDeviceGetPCIBusId)},
    {"cuMemGetInfo", 0, F(cuMemGetInfo_v2)},
    {"cuMemGetInfo_v2", 0, F(cuMemGetInfo_v2)},
    {"cuCtxCreate", 12050, F(cuCtxCreate_v4)},
    {"cuCtxCreate", 11040, F(cuCtxCreate_v3)},
    {"cuCtxCreate", 0, F(cuCtxCreate_v2)},
    {"cuCtxCreate_v2", 0, F(cuCtxCreate_v2)},
    {"cuCtxCreate_v3", 0, F(cuCtxCreate_v3)},
    {"cuCtxCreate_v4", 0, F(cuCtxCreate_v4)},
    {"cuCtxDestroy", 0, F(cuCtxDestroy_v2)},
    {"cuCtxDestroy_v2", 0, F(cuCtxDestroy_v2)},
    {"cuCtxGetCurrent", 0, F(cuCtxGetCurrent)},
    {"cuCtxSetCurrent", 0, F(cuCtxSetCurrent)},
    {"cuCtxPushCurrent", 0, F(cuCtxPushCurrent_v2)},
    {"cuCtxPopCurrent", 0, F(cuCtxPopCurrent_v2)},
    {"cuCtxGetDevice", 0, F(cuCtxGetDevice)},
    {"cuCtxSynchronize", 0, F(cuCtxSynchronize)},
    {"cuDevicePrimaryCtxRetain", 0, F(cuDevicePrimaryCtxRetain)},
    {"cuDevicePrimaryCtxRelease", 0, F(cuDevicePrimaryCtxRelease_v2)},
    {"cuDevicePrimaryCtxGetState", 0, F(cuDevicePrimaryCtxGetState)},
    {"cuGetErrorString", 0, F(cuGetErrorString)},
    {"cuGetErrorName", 0, F(cuGetErrorName)},
    {"cuMemGetAllocationGranularity", 0, F(cuMemGetAllocationGranularity)},
    {"cuMemCreate", 0, F(cuMemCreate)},
    {"cuMemRelease", 0, F(cuMemRelease)},
    {"cuMemAddressReserve", 0, F(cuMemAddressReserve)},
    {"cuMemAddressFree", 0, F(cuMemAddressFree)},
    {"cuMemMap", 0, F(cuMemMap)},
    {"cuMemSetAccess", 0, F(cuMemSetAccess)},
    {"cuMemUnmap", 0, F(cuMemUnmap)},
    {"cuGetExportTable", 0, F(cuGetExportTable)},
    {"cuGetProcAddress", 0, NULL},  /* patched below */
};

API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                 cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus);

static CUresult lookup_proc(const char *symbol, void **pfn, int cudaVersion,
                            CUdriverProcAddressQueryResult *status)
{
    size_t i;
    if (!symbol || !pfn) return CUDA_ERROR_INVALID_VALUE;
    if (strcmp(symbol, "cuGetProcAddress") == 0 || strcmp(symbol, "cuGetProcAddress_v2") == 0) {
        *pfn = F(cuGetProcAddress_v2);
        if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
        return CUDA_SUCCESS;
    }
    for (i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
        if (procs[i].fn && strcmp(procs[i].name, symbol) == 0 && cudaVersion >= procs[i].min_version) {
            *pfn = procs[i].fn;
            if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
            return CUDA_SUCCESS;
        }
    }
    *pfn = NULL;
    if (status) *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return CUDA_ERROR_NOT_FOUND;
}

API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                 cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
{
    (void)flags;
    return lookup_proc(symbol, pfn, cudaVersion, symbolStatus);
}

API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    (void)flags;
    return lookup_proc(symbol, pfn, cudaVersion, NULL);
}
