/* lib/ollama/cuda_vNN/libcudart.so.<maj>.<min>.<patch>: a stand-in for the
 * CUDA runtime that upstream's Linux payload bundles next to libggml-cuda.so
 * (llama/server/CMakeLists.txt:457-464@v0.32.15: install(TARGETS ggml-cuda
 * RUNTIME_DEPENDENCIES PRE_INCLUDE_REGEXES cublas cublasLt cudart ...)).
 * Nothing in the simulator loads it; Ollama >= 0.30.11 reads the CUDA runtime
 * version from this file's *name* (discover/llama_server.go:197,400@v0.30.11).
 * No constructor, no dependencies. */
#define API __attribute__((visibility("default")))

API int cudaRuntimeGetVersion(int *v)
{
    if (!v) return 1;   /* cudaErrorInvalidValue */
    *v = CUDART_VERSION;
    return 0;
}
