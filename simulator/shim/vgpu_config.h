/* Device description shared by the CUDA and NVML reference shims.
 * Read lazily (from cuInit / nvmlInit), never from a constructor. */
#ifndef VGPU_CONFIG_H
#define VGPU_CONFIG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#define VGPU_MAX_DEVICES 8

#define VGPU_DEFAULT_NAME      "NVIDIA vH100 80GB HBM3"
#define VGPU_DEFAULT_UUID      "GPU-8a3c5f1e-2b7d-4e90-9c61-5d2f7a0b3e48"
#define VGPU_DEFAULT_CC        "9.0"
#define VGPU_DEFAULT_TOTAL_MIB 81559ULL
#define VGPU_DEFAULT_FREE_MIB  80995ULL
#define VGPU_DEFAULT_DRIVER    12080
#define VGPU_DEFAULT_PCI_ID    "0000:00:05.0"
/* NVML's nvmlSystemGetDriverVersion string; a build can bake in another one
 * (-DVGPU_DEFAULT_NVIDIA_DRIVER='"535.104.05"'); VGPU_SIM_NVIDIA_DRIVER still wins. */
#ifndef VGPU_DEFAULT_NVIDIA_DRIVER
#define VGPU_DEFAULT_NVIDIA_DRIVER "570.133.20"
#endif
/* How long cuInit sleeps before it answers (VGPU_SIM_INIT_DELAY_MS wins). */
#ifndef VGPU_DEFAULT_INIT_DELAY_MS
#define VGPU_DEFAULT_INIT_DELAY_MS "0"
#endif

struct vgpu_config {
    char name[96];
    unsigned char uuid[16];
    int cc_major, cc_minor;
    unsigned long long total_bytes, free_bytes;
    int driver;                  /* CUDA encoding: 12080 = 12.8 */
    unsigned pci_domain, pci_bus, pci_dev, pci_fn;
    long init_delay_ms;
    int device_count;
    char nvidia_driver[32];
};

static const char *vgpu_env(const char *k, const char *def)
{
    const char *v = getenv(k);
    return (v && *v) ? v : def;
}

static int vgpu_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int vgpu_parse_uuid(const char *s, unsigned char out[16])
{
    int n = 0, hi = -1;
    if (strncmp(s, "GPU-", 4) == 0) s += 4;
    for (; *s; s++) {
        int v;
        if (*s == '-') continue;
        v = vgpu_hexval((unsigned char)*s);
        if (v < 0 || n >= 16) return -1;
        if (hi < 0) hi = v; else { out[n++] = (unsigned char)(hi << 4 | v); hi = -1; }
    }
    return (n == 16 && hi < 0) ? 0 : -1;
}

static int vgpu_parse_driver(const char *s)
{
    /* "12080" or "12.8" */
    const char *dot = strchr(s, '.');
    if (dot) {
        int major = atoi(s), minor = atoi(dot + 1);
        return major * 1000 + minor * 10;
    }
    return atoi(s);
}

static void vgpu_load_config(struct vgpu_config *c)
{
    const char *cc, *pci, *s;
    char *end;
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", vgpu_env("VGPU_SIM_NAME", VGPU_DEFAULT_NAME));
    if (vgpu_parse_uuid(vgpu_env("VGPU_SIM_UUID", VGPU_DEFAULT_UUID), c->uuid) != 0)
        vgpu_parse_uuid(VGPU_DEFAULT_UUID, c->uuid);
    cc = vgpu_env("VGPU_SIM_CC", VGPU_DEFAULT_CC);
    c->cc_major = atoi(cc);
    c->cc_minor = strchr(cc, '.') ? atoi(strchr(cc, '.') + 1) : 0;
    s = vgpu_env("VGPU_SIM_TOTAL_MIB", NULL);
    c->total_bytes = (s ? strtoull(s, &end, 10) : VGPU_DEFAULT_TOTAL_MIB) << 20;
    s = vgpu_env("VGPU_SIM_FREE_MIB", NULL);
    if (s) c->free_bytes = strtoull(s, &end, 10) << 20;
    else if (getenv("VGPU_SIM_TOTAL_MIB") && *getenv("VGPU_SIM_TOTAL_MIB"))
        c->free_bytes = c->total_bytes - (c->total_bytes / 100);   /* ~1% in use */
    else c->free_bytes = VGPU_DEFAULT_FREE_MIB << 20;
    if (c->free_bytes > c->total_bytes) c->free_bytes = c->total_bytes;
    c->driver = vgpu_parse_driver(vgpu_env("VGPU_SIM_DRIVER", "12080"));
    pci = vgpu_env("VGPU_SIM_PCI_ID", VGPU_DEFAULT_PCI_ID);
    if (sscanf(pci, "%x:%x:%x.%x", &c->pci_domain, &c->pci_bus, &c->pci_dev, &c->pci_fn) != 4) {
        c->pci_domain = 0; c->pci_bus = 0; c->pci_dev = 5; c->pci_fn = 0;
    }
    c->init_delay_ms = atol(vgpu_env("VGPU_SIM_INIT_DELAY_MS", VGPU_DEFAULT_INIT_DELAY_MS));
    c->device_count = atoi(vgpu_env("VGPU_SIM_DEVICE_COUNT", "1"));
    if (c->device_count < 0) c->device_count = 0;
    if (c->device_count > VGPU_MAX_DEVICES) c->device_count = VGPU_MAX_DEVICES;
    snprintf(c->nvidia_driver, sizeof(c->nvidia_driver), "%s",
             vgpu_env("VGPU_SIM_NVIDIA_DRIVER", VGPU_DEFAULT_NVIDIA_DRIVER));
}

/* Physical device i: same as device 0 but a different UUID and PCI slot. */
static void vgpu_device_uuid(const struct vgpu_config *c, int i, unsigned char out[16])
{
    memcpy(out, c->uuid, 16);
    out[15] = (unsigned char)(out[15] + i);
}

static void vgpu_format_uuid(const unsigned char u[16], char *buf, size_t len)
{
    snprintf(buf, len,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
             u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void vgpu_format_pci(const struct vgpu_config *c, int i, char *buf, size_t len)
{
    snprintf(buf, len, "%04x:%02x:%02x.%x", c->pci_domain, c->pci_bus, c->pci_dev + (unsigned)i, c->pci_fn);
}

#endif
