// The system's zstd (Debian: libzstd-dev to build, libzstd1 to run; dpkg itself needs libzstd1,
// so every Debian 12 has it). Webhook bodies are stored with it (`DeliveryPayload`).
#include <zstd.h>
