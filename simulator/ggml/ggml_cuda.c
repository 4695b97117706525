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
