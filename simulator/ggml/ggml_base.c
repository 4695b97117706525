/* Simulated lib/ollama/libggml-base.so: the part every backend links against. */
#define API __attribute__((visibility("default")))

API const char *ggml_sim_base_version(void) { return "ggml-sim 0.0.0"; }

API int ggml_backend_load_all_from_path(const char *path) { (void)path; return 0; }
