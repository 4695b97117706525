/* Optional reference runtime API shim (stands in for libcudart.so.12).
 * A thin layer over the driver API: it needs libcuda.so.1 (DT_NEEDED), as the
 * real runtime needs the driver.  No constructor. */
#define _GNU_SOURCE
#include <stdio.h>
#include "cuda_min.h"

#define API __attribute__((visibility("default")))

typedef int cudaError_t;
#define cudaSuccess 0
#define cudaErrorInvalidValue 1
#define cudaErrorInsufficientDriver 35
#define cudaErrorNoDevice 100
#define cudaErrorInvalidDevice 101
#define CUDART_VERSION 12080

extern CUresult cuInit(unsigned int flags);
extern CUresult cuDriverGetVersion(int *version);
extern CUresult cuDeviceGetCount(int *count);
extern CUresult cuDeviceGet(CUdevice *device, int ordinal);
extern CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev);
extern CUresult cuCtxSetCurrent(CUcontext ctx);
extern CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes);

static int current_device;

static cudaError_t lazy_init(void)
{
    int v = 0;
    CUresult r;
    if (cuDriverGetVersion(&v) != CUDA_SUCCESS || v < 12000) return cudaErrorInsufficientDriver;
    r = cuInit(0);
    if (r == CUDA_ERROR_NO_DEVICE) return cudaErrorNoDevice;
    return r == CUDA_SUCCESS ? cudaSuccess : (cudaError_t)r;
}

API cudaError_t cudaDriverGetVersion(int *v)
{
    if (!v) return cudaErrorInvalidValue;
    return cuDriverGetVersion(v) == CUDA_SUCCESS ? cudaSuccess : cudaErrorInsufficientDriver;
}

API cudaError_t cudaRuntimeGetVersion(int *v)
{
    if (!v) return cudaErrorInvalidValue;
    *v = CUDART_VERSION;
    return cudaSuccess;
}

API cudaError_t cudaGetDeviceCount(int *count)
{
    cudaError_t e;
    if (!count) return cudaErrorInvalidValue;
    *count = 0;
    if ((e = lazy_init()) != cudaSuccess) return e;
    return cuDeviceGetCount(count) == CUDA_SUCCESS ? cudaSuccess : cudaErrorNoDevice;
}

API cudaError_t cudaSetDevice(int device)
{
    CUdevice d;
    CUcontext ctx;
    cudaError_t e;
    if ((e = lazy_init()) != cudaSuccess) return e;
    if (cuDeviceGet(&d, device) != CUDA_SUCCESS) return cudaErrorInvalidDevice;
    if (cuDevicePrimaryCtxRetain(&ctx, d) != CUDA_SUCCESS) return cudaErrorInvalidDevice;
    cuCtxSetCurrent(ctx);
    current_device = device;
    return cudaSuccess;
}

API cudaError_t cudaGetDevice(int *device)
{
    if (!device) return cudaErrorInvalidValue;
    *device = current_device;
    return cudaSuccess;
}

API cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    cudaError_t e = cudaSetDevice(current_device);
    if (e != cudaSuccess) return e;
    return cuMemGetInfo_v2(free_bytes, total_bytes) == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

API const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error";
    }
}
