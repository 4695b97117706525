/* Simulated lib/ollama/vulkan/libggml-vulkan.so.  The guests have no Vulkan
 * ICD for the paravirtual device, so by default this backend enumerates
 * nothing (it tries the Vulkan loader like the real one and reports what
 * happened).  VGPU_SIM_VULKAN_DEVICES=N (N <= VGPU_SIM_DEVICE_COUNT) makes it
 * report the first N simulated devices the way an ICD would: same name, UUID,
 * PCI address and memory as the CUDA shim's devices (so Ollama can merge the
 * CUDA and Vulkan views of one GPU by PCI id), compute capability 0.0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stddef.h>
#include "../shim/vgpu_config.h"

#define API __attribute__((visibility("default")))

extern const char *ggml_sim_base_version(void);

static size_t json_str(char *buf, size_t len, const char *s)
{   /* s as a JSON string body (quotes, backslashes, control characters escaped) */
    size_t pos = 0;
    for (; *s && pos + 7 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { buf[pos++] = '\\'; buf[pos++] = (char)c; }
        else if (c < 0x20) pos += (size_t)snprintf(buf + pos, len - pos, "\\u%04x", c);
        else buf[pos++] = (char)c;
    }
    if (pos < len) buf[pos] = '\0';
    return pos;
}

API int ggml_backend_sim_discover(char *buf, size_t len)
{
    void *h;
    const char *loader;
    struct vgpu_config cfg;
    size_t pos;
    int n, i;
    if (!buf || len < 64) return -1;
    (void)ggml_sim_base_version();
    h = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    loader = h ? "loaded" : "libvulkan.so.1 not found";
    if (h) dlclose(h);
    vgpu_load_config(&cfg);
    n = atoi(vgpu_env("VGPU_SIM_VULKAN_DEVICES", "0"));
    if (n < 0) n = 0;
    if (n > cfg.device_count) n = cfg.device_count;
    pos = (size_t)snprintf(buf, len, "{\"backend\":\"Vulkan\",\"vulkan_loader\":\"%s\",\"devices\":[", loader);
    for (i = 0; i < n && pos < len; i++) {
        unsigned char u[16];
        char id[64], pci[32], name[256];
        vgpu_device_uuid(&cfg, i, u);
        vgpu_format_uuid(u, id, sizeof(id));
        vgpu_format_pci(&cfg, i, pci, sizeof(pci));
        json_str(name, sizeof(name), cfg.name);
        pos += (size_t)snprintf(buf + pos, len - pos,
                                "%s{\"index\":%d,\"id\":\"%s\",\"name\":\"%s\",\"compute_major\":0,\"compute_minor\":0,"
                                "\"total\":%llu,\"free\":%llu,\"pci_id\":\"%s\"}",
                                i ? "," : "", i, id, name, cfg.total_bytes, cfg.free_bytes, pci);
    }
    if (pos < len) snprintf(buf + pos, len - pos, "],\"error\":null}");
    return 0;
}

API int ggml_backend_score(void) { return 10; }
