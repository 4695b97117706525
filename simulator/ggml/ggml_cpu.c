/* Simulated lib/ollama/libggml-cpu-*.so: a CPU backend that needs nothing. */
#define API __attribute__((visibility("default")))

extern const char *ggml_sim_base_version(void);

API int ggml_backend_score(void) { return ggml_sim_base_version() ? 1 : 0; }

API const char *ggml_backend_cpu_variant(void) { return CPU_VARIANT; }
