/* Minimal CUDA driver API / NVML declarations for the reference shim and the
 * simulated libggml-cuda.  Only what this project uses; values match cuda.h /
 * nvml.h so that a real driver and the shim are interchangeable. */
#ifndef VGPU_CUDA_MIN_H
#define VGPU_CUDA_MIN_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef uint64_t cuuint64_t;
typedef struct { char bytes[16]; } CUuuid;
typedef int CUdevice_attribute;
typedef int CUdriverProcAddressQueryResult;

/* Virtual memory management (cuda.h, CUDA 10.2+): what libggml-cuda.so's VMM pool uses. */
typedef unsigned long long CUdeviceptr;                 /* CUdeviceptr_v2: 64-bit on every 64-bit host */
typedef unsigned long long CUmemGenericAllocationHandle;
typedef int CUmemAllocationType;
typedef int CUmemAllocationHandleType;
typedef int CUmemLocationType;
typedef int CUmemAccess_flags;
typedef int CUmemAllocationGranularity_flags;
typedef struct { CUmemLocationType type; int id; } CUmemLocation;
typedef struct {
    CUmemAllocationType type;
    CUmemAllocationHandleType requestedHandleTypes;
    CUmemLocation location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} CUmemAllocationProp;
typedef struct { CUmemLocation location; CUmemAccess_flags flags; } CUmemAccessDesc;

#define CU_MEM_ALLOCATION_TYPE_PINNED        0x1
#define CU_MEM_LOCATION_TYPE_DEVICE          0x1
#define CU_MEM_ACCESS_FLAGS_PROT_NONE        0x0
#define CU_MEM_ACCESS_FLAGS_PROT_READ        0x1
#define CU_MEM_ACCESS_FLAGS_PROT_READWRITE   0x3
#define CU_MEM_ALLOC_GRANULARITY_MINIMUM     0x0
#define CU_MEM_ALLOC_GRANULARITY_RECOMMENDED 0x1

#define CUDA_SUCCESS                    0
#define CUDA_ERROR_INVALID_VALUE        1
#define CUDA_ERROR_OUT_OF_MEMORY        2
#define CUDA_ERROR_NOT_INITIALIZED      3
#define CUDA_ERROR_DEINITIALIZED        4
#define CUDA_ERROR_STUB_LIBRARY         34
#define CUDA_ERROR_INSUFFICIENT_DRIVER  35
#define CUDA_ERROR_NO_DEVICE            100
#define CUDA_ERROR_INVALID_DEVICE       101
#define CUDA_ERROR_INVALID_CONTEXT      201
#define CUDA_ERROR_NOT_FOUND            500
#define CUDA_ERROR_NOT_SUPPORTED        801
#define CUDA_ERROR_SYSTEM_DRIVER_MISMATCH 803
#define CUDA_ERROR_UNKNOWN              999

#define CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK          1
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK    8
#define CU_DEVICE_ATTRIBUTE_WARP_SIZE                      10
#define CU_DEVICE_ATTRIBUTE_CLOCK_RATE                     13
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT           16
#define CU_DEVICE_ATTRIBUTE_INTEGRATED                     18
#define CU_DEVICE_ATTRIBUTE_PCI_BUS_ID                     33
#define CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID                  34
#define CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE              36
#define CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH        37
#define CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID                  50
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR       75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR       76
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR 81
#define CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY                 83
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97
#define CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED 102
#define CU_DEVICE_ATTRIBUTE_MAX                            150

#define CU_GET_PROC_ADDRESS_SUCCESS                 0
#define CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND        1
#define CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT  2

/* NVML */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
#define NVML_SUCCESS                 0
#define NVML_ERROR_UNINITIALIZED     1
#define NVML_ERROR_INVALID_ARGUMENT  2
#define NVML_ERROR_NOT_SUPPORTED     3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_NOT_FOUND         6
#define NVML_ERROR_UNKNOWN           999

#endif
