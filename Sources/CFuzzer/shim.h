// libFuzzer's driver, for a program that keeps its own main (SwiftPM names the
// entry point of an executable target, so libFuzzer's main cannot be used).
// Linked only when built with -sanitize=fuzzer; declared, never called, otherwise.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
