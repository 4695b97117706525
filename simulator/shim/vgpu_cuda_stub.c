/* shim/bad/libcuda-stub.so: what the CUDA toolkit's link-time stub
 * (/usr/local/cuda/lib64/stubs/libcuda.so, SONAME libcuda.so.1) does when it
 * ends up being loaded at run time instead of a driver: it exports the driver
 * API, so the loader is satisfied, but every call fails with
 * CUDA_ERROR_STUB_LIBRARY (34).  cuda.h documents 34 as "the CUDA driver that
 * the application has loaded is a stub library. Applications that run with
 * the stub rather than a real driver loaded will result in CUDA API returning
 * this error."  The real stub's exact export list is not reproduced; this one
 * exports the same cu* names as the reference shim (vgpu_cuda.c), with the
 * same C signatures, and no constructor.
 */
#define _GNU_SOURCE
#include "cuda_min.h"

#define API __attribute__((visibility("default")))
#define STUB { return CUDA_ERROR_STUB_LIBRARY; }

API CUresult cuInit(unsigned int flags) STUB
API CUresult cuDriverGetVersion(int *version) STUB
API CUresult cuDeviceGetCount(int *count) STUB
API CUresult cuDeviceGet(CUdevice *device, int ordinal) STUB
API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) STUB
API CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev) STUB
API CUresult cuDeviceGetName(char *name, int len, CUdevice dev) STUB
API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) STUB
API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) STUB
API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) STUB
API CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev) STUB
API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) STUB
API CUresult cuCtxCreate_v3(CUcontext *pctx, void *paramsArray, int numParams, unsigned int flags, CUdevice dev) STUB
API CUresult cuCtxCreate_v4(CUcontext *pctx, void *ctxCreateParams, unsigned int flags, CUdevice dev) STUB
API CUresult cuCtxDestroy_v2(CUcontext ctx) STUB
API CUresult cuCtxDestroy(CUcontext ctx) STUB
API CUresult cuCtxGetCurrent(CUcontext *pctx) STUB
API CUresult cuCtxSetCurrent(CUcontext ctx) STUB
API CUresult cuCtxPushCurrent_v2(CUcontext ctx) STUB
API CUresult cuCtxPopCurrent_v2(CUcontext *pctx) STUB
API CUresult cuCtxGetDevice(CUdevice *dev) STUB
API CUresult cuCtxSynchronize(void) STUB
API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) STUB
API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) STUB
API CUresult cuDevicePrimaryCtxRelease(CUdevice dev) STUB
API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) STUB
API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes) STUB
API CUresult cuGetErrorString(CUresult error, const char **pStr) STUB
API CUresult cuGetErrorName(CUresult error, const char **pStr) STUB
API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                 cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus) STUB
API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags) STUB
API CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId) STUB
/* the virtual memory management calls libggml-cuda.so links (so that it loads, as on the real stub) */
API CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                           CUmemAllocationGranularity_flags option) STUB
API CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                         unsigned long long flags) STUB
API CUresult cuMemRelease(CUmemGenericAllocationHandle handle) STUB
API CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                 unsigned long long flags) STUB
API CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) STUB
API CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                      unsigned long long flags) STUB
API CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count) STUB
API CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) STUB
