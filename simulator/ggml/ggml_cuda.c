/* Simulated Ollama CUDA backend: lib/ollama/cuda_vNN/libggml-cuda.so.
 *
 * Linked against libcuda.so.1 (DT_NEEDED, no RPATH/RUNPATH) exactly like the
 * real backend, so the dynamic loader has to resolve libcuda.so.1 (LD_PRELOAD,
 * LD_LIBRARY_PATH, ld.so.cache, default dirs) before this library can even be
 * loaded with RTLD_NOW; every cu* symbol used below must be exported by
 * whatever it resolved to.
 *
 * ggml_backend_sim_discover() asks the driver what a ggml-cuda backend asks it
 * and writes the answers (or the failing CUresult) as JSON.
 * MIN_DRIVER: the lowest driver (CUDA encoding) this build works with.
 *
 * Like the real one (which links CUDA::cuda_driver,
 * ml/backend/ggml/ggml/src/ggml-cuda/CMakeLists.txt:115-119@v0.13.5) it has
 * undefined references to the virtual memory management API and
 * cuGetErrorString: per device, cuDeviceGet + cuDeviceGetAttribute(102) and,
 * when that is non-zero, cuMemGetAllocationGranularity
 * (ggml-cuda.cu:282-290@v0.13.5); the VMM pool's calls (cuMemCreate,
 * cuMemAddressReserve, cuMemMap, cuMemRelease, cuMemSetAccess, cuMemUnmap,
 * cuMemAddressFree; ggml-cuda.cu:539-596@v0.13.5) in
 * ggml_backend_sim_vmm_pool(), which discovery does not call. Loaded with
 * RTLD_NOW (ggml-backend-reg.cpp:173@v0.13.5), it fails to load on a shim
 * missing any of them, as the real backend does.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../shim/cuda_min.h"

#ifndef MIN_DRIVER
#define MIN_DRIVER 12000
#endif

#define API __attribute__((visibility("default")))

extern CUresult cuInit(unsigned int flags);
extern CUresult cuDriverGetVersion(int *version);
extern CUresult cuDeviceGetCount(int *count);
extern CUresult cuDeviceGet(CUdevice *device, int ordinal);
extern CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
extern CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev);
extern CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev);
extern CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);
extern CUresult cuCtxCreate_v3(CUcontext *pctx, void *params, int n, unsigned int flags, CUdevice dev);
extern CUresult cuCtxDestroy_v2(CUcontext ctx);
extern CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes);
extern CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev);
extern CUresult cuGetErrorString(CUresult error, const char **pStr);
extern CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                              CUmemAllocationGranularity_flags option);
extern CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                            unsigned long long flags);
extern CUresult cuMemRelease(CUmemGenericAllocationHandle handle);
extern CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                    unsigned long long flags);
extern CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size);
extern CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                         unsigned long long flags);
extern CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count);
extern CUresult cuMemUnmap(CUdeviceptr ptr, size_t size);
extern const char *ggml_sim_base_version(void);

struct out { char *buf; size_t len, pos; };

static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (o->pos >= o->len) return;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
    va_end(ap);
    if (n > 0) o->pos += (size_t)n;
    if (o->pos >= o->len) o->pos = o->len - 1;
}

static void emit_str(struct out *o, const char *s)
{
    emit(o, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') emit(o, "\\%c", c);
        else if (c < 0x20) emit(o, "\\u%04x", c);
        else emit(o, "%c", c);
    }
    emit(o, "\"");
}

static const char *errstr(CUresult r)
{
    const char *s = NULL;
    if (cuGetErrorString(r, &s) != CUDA_SUCCESS || !s) s = "unknown error";
    return s;
}

static int fail(struct out *o, const char *call, CUresult r, const char *msg)
{
    emit(o, "\"error\":{\"call\":");
    emit_str(o, call);
    emit(o, ",\"code\":%d,\"message\":", r);
    emit_str(o, msg ? msg : errstr(r));
    emit(o, "}}");
    return 1;
}

typedef nvmlReturn_t (*nvml_init_t)(void);
typedef nvmlReturn_t (*nvml_by_uuid_t)(const char *, nvmlDevice_t *);
typedef nvmlReturn_t (*nvml_mem_t)(nvmlDevice_t, nvmlMemory_t *);

/* Ollama's ggml-cuda asks NVML (when it loads) for free memory. */
static void *nvml_handle;
static const char *nvml_status(void)
{
    static char status[512];
    nvml_init_t init;
    if (nvml_handle) return "ok";
    nvml_handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml_handle) {
        const char *e = dlerror();
        snprintf(status, sizeof(status), "%s", e ? e : "dlopen failed");
        return status;
    }
    init = (nvml_init_t)dlsym(nvml_handle, "nvmlInit_v2");
    if (!init || init() != NVML_SUCCESS) {
        dlclose(nvml_handle);
        nvml_handle = NULL;
        return "nvmlInit_v2 failed";
    }
    return "ok";
}

static CUmemAllocationProp vmm_prop(CUdevice dev)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof(prop));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    return prop;
}

/* ggml_cuda_init's VMM check (ggml-cuda.cu:282-290@v0.13.5): *granularity 0 when the device has no VMM */
static CUresult vmm_granularity(CUdevice dev, size_t *granularity)
{
    CUmemAllocationProp prop = vmm_prop(dev);
    size_t g = 0;
    int vmm = 0;
    CUresult r = cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
    if (r == CUDA_SUCCESS && vmm)
        r = cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
    if (granularity) *granularity = g;
    return r;
}

#define VMM_POOL_MAX_SIZE (1ull << 35)   /* CUDA_POOL_VMM_MAX_SIZE, ggml-cuda.cu:512@v0.13.5 */

/* What ggml_cuda_pool_vmm does for one allocation of bytes on device and at its end (ggml-cuda.cu:534-596
 * @v0.13.5): reserve the pool's address space, create and map physical memory at its start, release the
 * handle, make it read/write, then unmap and free. In the simulator "device" memory is host memory, so
 * the bytes are also written and read back. 0 on success, else the failing CUresult (-1: memory did not
 * hold what was written; -2: the device has no VMM). */
API int ggml_backend_sim_vmm_pool(int device, size_t bytes)
{
    CUmemAllocationProp prop;
    CUmemAccessDesc access;
    CUmemGenericAllocationHandle handle;
    CUdeviceptr pool = 0;
    CUdevice dev;
    size_t g = 0, size, k;
    volatile unsigned char *p;
    CUresult r;
    int bad = 0;

    if ((r = cuInit(0)) != CUDA_SUCCESS || (r = cuDeviceGet(&dev, device)) != CUDA_SUCCESS) return r;
    if ((r = vmm_granularity(dev, &g)) != CUDA_SUCCESS) return r;
    if (g == 0) return -2;
    size = (bytes + g - 1) / g * g;
    if (size == 0) size = g;
    prop = vmm_prop(dev);
    if ((r = cuMemCreate(&handle, size, &prop, 0)) != CUDA_SUCCESS) return r;
    if ((r = cuMemAddressReserve(&pool, VMM_POOL_MAX_SIZE, 0, 0, 0)) != CUDA_SUCCESS) {
        cuMemRelease(handle);
        return r;
    }
    if ((r = cuMemMap(pool, size, 0, handle, 0)) != CUDA_SUCCESS) {
        cuMemRelease(handle);
        cuMemAddressFree(pool, VMM_POOL_MAX_SIZE);
        return r;
    }
    if ((r = cuMemRelease(handle)) != CUDA_SUCCESS) return r;
    memset(&access, 0, sizeof(access));
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = dev;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    if ((r = cuMemSetAccess(pool, size, &access, 1)) != CUDA_SUCCESS) {
        cuMemUnmap(pool, size);
        cuMemAddressFree(pool, VMM_POOL_MAX_SIZE);
        return r;
    }
    p = (volatile unsigned char *)(uintptr_t)pool;
    for (k = 0; k < size; k += 4096) p[k] = (unsigned char)(k >> 12);
    for (k = 0; k < size; k += 4096) bad |= p[k] != (unsigned char)(k >> 12);
    if ((r = cuMemUnmap(pool, size)) != CUDA_SUCCESS) return r;
    if ((r = cuMemAddressFree(pool, VMM_POOL_MAX_SIZE)) != CUDA_SUCCESS) return r;
    return bad ? -1 : 0;
}

API int ggml_backend_sim_discover(char *buf, size_t len)
{
    struct out o = {buf, len, 0};
    Dl_info info;
    CUresult r;
    int version = 0, count = 0, i;
    const char *nvml;

    if (!buf || len < 64) return -1;
    buf[0] = '\0';
    emit(&o, "{\"backend\":\"CUDA\",\"min_driver\":%d,", MIN_DRIVER);
    memset(&info, 0, sizeof(info));
    if (dladdr((void *)cuInit, &info) && info.dli_fname) {
        emit(&o, "\"driver_lib\":");
        emit_str(&o, info.dli_fname);
        emit(&o, ",");
    }

    r = cuInit(0);
    if (r != CUDA_SUCCESS) return fail(&o, "cuInit", r, NULL);
    r = cuDriverGetVersion(&version);
    if (r != CUDA_SUCCESS) return fail(&o, "cuDriverGetVersion", r, NULL);
    emit(&o, "\"driver_version\":%d,", version);
    if (version < MIN_DRIVER) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "driver too old: CUDA driver version is insufficient for CUDA runtime version (driver %d.%d, need %d.%d)",
                 version / 1000, (version % 1000) / 10, MIN_DRIVER / 1000, (MIN_DRIVER % 1000) / 10);
        return fail(&o, "cuDriverGetVersion", CUDA_ERROR_INSUFFICIENT_DRIVER, msg);
    }
    r = cuDeviceGetCount(&count);
    if (r != CUDA_SUCCESS) return fail(&o, "cuDeviceGetCount", r, NULL);

    nvml = nvml_status();
    emit(&o, "\"nvml\":");
    emit_str(&o, nvml);
    emit(&o, ",\"devices\":[");
    for (i = 0; i < count; i++) {
        CUdevice dev;
        CUcontext ctx = NULL;
        CUuuid uuid;
        char name[256], pci[32], id[64];
        int major = 0, minor = 0;
        size_t total = 0, free_b = 0, total2 = 0;
        const unsigned char *u;

        if ((r = cuDeviceGet(&dev, i)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuDeviceGet", r, NULL); }
        if ((r = vmm_granularity(dev, NULL)) != CUDA_SUCCESS) {
            emit(&o, "],"); return fail(&o, "cuMemGetAllocationGranularity", r, NULL);
        }
        if ((r = cuDeviceGetName(name, sizeof(name), dev)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuDeviceGetName", r, NULL); }
        if ((r = cuDeviceGetUuid(&uuid, dev)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuDeviceGetUuid", r, NULL); }
        if ((r = cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)) != CUDA_SUCCESS ||
            (r = cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)) != CUDA_SUCCESS) {
            emit(&o, "],"); return fail(&o, "cuDeviceGetAttribute", r, NULL);
        }
        if ((r = cuDeviceTotalMem_v2(&total, dev)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuDeviceTotalMem_v2", r, NULL); }
        if ((r = cuCtxCreate_v3(&ctx, NULL, 0, 0, dev)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuCtxCreate_v3", r, NULL); }
        r = cuMemGetInfo_v2(&free_b, &total2);
        cuCtxDestroy_v2(ctx);
        if (r != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuMemGetInfo_v2", r, NULL); }
        if ((r = cuDeviceGetPCIBusId(pci, sizeof(pci), dev)) != CUDA_SUCCESS) { emit(&o, "],"); return fail(&o, "cuDeviceGetPCIBusId", r, NULL); }

        u = (const unsigned char *)uuid.bytes;
        snprintf(id, sizeof(id),
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
                 u[10], u[11], u[12], u[13], u[14], u[15]);
        if (nvml_handle) {
            nvml_by_uuid_t by_uuid = (nvml_by_uuid_t)dlsym(nvml_handle, "nvmlDeviceGetHandleByUUID");
            nvml_mem_t mem = (nvml_mem_t)dlsym(nvml_handle, "nvmlDeviceGetMemoryInfo");
            nvmlDevice_t nd;
            nvmlMemory_t m;
            if (by_uuid && mem && by_uuid(id, &nd) == NVML_SUCCESS && mem(nd, &m) == NVML_SUCCESS && m.free)
                free_b = (size_t)m.free;
        }
        emit(&o, "%s{\"index\":%d,\"id\":", i ? "," : "", i);
        emit_str(&o, id);
        emit(&o, ",\"name\":");
        emit_str(&o, name);
        emit(&o, ",\"compute_major\":%d,\"compute_minor\":%d,\"total\":%zu,\"free\":%zu,\"pci_id\":",
             major, minor, total, free_b);
        emit_str(&o, pci);
        emit(&o, "}");
    }
    emit(&o, "],\"error\":null}");
    return 0;
}

API int ggml_backend_cuda_discover(char *buf, size_t len)
{
    return ggml_backend_sim_discover(buf, len);
}

/* What a ggml backend library exports for the loader's scoring. */
API int ggml_backend_score(void) { return ggml_sim_base_version() ? 100 : 0; }
