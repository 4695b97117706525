/* Simulated lib/ollama/vulkan/libggml-vulkan.so.  The guests have no Vulkan
 * ICD for the paravirtual device, so this backend always enumerates nothing
 * (it tries the Vulkan loader like the real one and reports what happened). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stddef.h>

#define API __attribute__((visibility("default")))

extern const char *ggml_sim_base_version(void);

API int ggml_backend_sim_discover(char *buf, size_t len)
{
    void *h;
    const char *loader;
    if (!buf || len < 64) return -1;
    (void)ggml_sim_base_version();
    h = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    loader = h ? "loaded, no physical devices" : "libvulkan.so.1 not found";
    if (h) dlclose(h);
    snprintf(buf, len, "{\"backend\":\"Vulkan\",\"vulkan_loader\":\"%s\",\"devices\":[],\"error\":null}", loader);
    return 0;
}

API int ggml_backend_score(void) { return 10; }
