/*
 * PID1 for ee-host's TCG boot test (musl-gcc -static): proves the kernel ran
 * userspace by printing a marker on the serial console, then idles so the
 * test can exercise `ee-host list/status/logs/stop` against a live guest.
 * SIGTERM/ACPI power-down are deliberately not handled: `stop` must fall
 * back to signalling QEMU.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("EE-HOST-BOOT-TEST: init running as pid %d\n", (int)getpid());
    fflush(stdout);
    for (;;)
        pause();
}
