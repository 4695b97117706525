/* Reference NVML shim (stands in for libnvidia-ml.so.1).  Same device as the
 * CUDA shim (same VGPU_SIM_* variables).  Like real NVML it ignores
 * CUDA_VISIBLE_DEVICES.  No constructor.
 *
 * Exports every default required NVML symbol of module_utils/vgpu_elf.py:
 * what ggml's NVML memory query dlsym()s (nvmlInit_v2, nvmlShutdown,
 * nvmlDeviceGetHandleByUUID, nvmlDeviceGetMemoryInfo, nvmlDeviceGetName,
 * nvmlErrorString; ml/backend/ggml/ggml/src/mem_nvml.cpp:178-184@v0.13.5),
 * what the 0.30 native probe dlsym()s (nvmlSystemGetDriverVersion;
 * discover/native_probe_linux.go:392-404@v0.30.11) and the toolkit probe's
 * nvmlDeviceGetCount_v2.
 *
 *   -DNVML_NEEDS_CUDA  the broken build from the field: the NVML shim was
 *                      linked against symbols that only the CUDA shim defines
 *                      (without a DT_NEEDED on it), so loading it on its own
 *                      fails with "undefined symbol: cuDeviceGetCount".
 */
#define _GNU_SOURCE
#include "cuda_min.h"
#include "vgpu_config.h"

#define API __attribute__((visibility("default")))

#ifdef NVML_NEEDS_CUDA
extern CUresult cuDeviceGetCount(int *count);
/* A data reference: resolved when the library is loaded, even with lazy binding. */
__attribute__((used)) static CUresult (*volatile cuda_count_fn)(int *) = cuDeviceGetCount;
#endif

static struct vgpu_config cfg;
static int init_count;
struct nvmlDevice_st { int index; };
static struct nvmlDevice_st devices[VGPU_MAX_DEVICES];

API nvmlReturn_t nvmlInit_v2(void)
{
    int i;
#ifdef NVML_NEEDS_CUDA
    (void)cuda_count_fn;
#endif
    vgpu_load_config(&cfg);
    for (i = 0; i < VGPU_MAX_DEVICES; i++) devices[i].index = i;
    init_count++;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }

API nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return nvmlInit_v2(); }

API nvmlReturn_t nvmlShutdown(void)
{
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(cfg.nvidia_driver) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(version, length, "%s", cfg.nvidia_driver);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v)
{
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    *v = cfg.driver ? cfg.driver : VGPU_DEFAULT_DRIVER;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned)cfg.device_count;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= (unsigned)cfg.device_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

static int valid(nvmlDevice_t d)
{
    return d && d >= devices && d < devices + cfg.device_count;
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    int i;
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < cfg.device_count; i++) {
        unsigned char u[16];
        char s[64];
        vgpu_device_uuid(&cfg, i, u);
        vgpu_format_uuid(u, s, sizeof(s));
        if (strcasecmp(s, uuid) == 0) { *device = &devices[i]; return NVML_SUCCESS; }
    }
    return NVML_ERROR_NOT_FOUND;
}

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !name) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(cfg.name) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(name, length, "%s", cfg.name);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    unsigned char u[16];
    char s[64];
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !uuid) return NVML_ERROR_INVALID_ARGUMENT;
    vgpu_device_uuid(&cfg, device->index, u);
    vgpu_format_uuid(u, s, sizeof(s));
    if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(uuid, length, "%s", s);
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !memory) return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = cfg.total_bytes;
    memory->free = cfg.free_bytes;
    memory->used = cfg.total_bytes - cfg.free_bytes;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    *major = cfg.cc_major;
    *minor = cfg.cc_minor;
    return NVML_SUCCESS;
}

API const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}
