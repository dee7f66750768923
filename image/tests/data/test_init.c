/*
 * A minimal PID1 for ee-image's boot test (built with musl-gcc -static).
 *
 * It checks what the initramfs and VM give the real ee-init: it loads the
 * modules listed in /etc/ee/modules in order with finit_module(2) and
 * reports each result, prints the launch config that the host passed over
 * fw_cfg, reports whether the virtio NIC appeared, then powers off.
 * Every report line starts with "ee-test:" so the test can find it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MODULE_LIST "/etc/ee/modules"
#define MODULE_LIST_HEADER "ee-modules 1\n"
#define LAUNCH_CONFIG "/sys/firmware/qemu_fw_cfg/by_name/opt/easyenclave/launch.json/raw"

static void load_modules(void)
{
    char line[1024];
    FILE *list = fopen(MODULE_LIST, "r");
    if (!list) {
        printf("ee-test: cannot open " MODULE_LIST ": errno %d\n", errno);
        return;
    }
    if (!fgets(line, sizeof line, list) || strcmp(line, MODULE_LIST_HEADER) != 0) {
        printf("ee-test: bad module list header\n");
        fclose(list);
        return;
    }
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "\n")] = '\0';
        char *path = strchr(line, ' ');
        if (!path) {
            printf("ee-test: bad module list line '%s'\n", line);
            continue;
        }
        *path++ = '\0';
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            printf("ee-test: module %s open failed errno %d\n", line, errno);
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) == 0)
            printf("ee-test: module %s loaded\n", line);
        else
            printf("ee-test: module %s failed errno %d\n", line, errno);
        close(fd);
    }
    fclose(list);
}

static void print_launch_config(void)
{
    char buf[4096];
    int fd = open(LAUNCH_CONFIG, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("ee-test: no launch config: errno %d\n", errno);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    printf("ee-test: launch config: %s\n", buf);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("EE-TEST-INIT: started\n");
    if (mount("proc", "/proc", "proc", 0, NULL) != 0 ||
        mount("sysfs", "/sys", "sysfs", 0, NULL) != 0)
        printf("ee-test: mount failed: errno %d\n", errno);
    load_modules();
    print_launch_config();
    struct stat st;
    printf("ee-test: eth0 %s\n", stat("/sys/class/net/eth0", &st) == 0 ? "present" : "missing");
    printf("EE-TEST-INIT: powering off\n");
    sync();
    reboot(RB_POWER_OFF);
    printf("ee-test: reboot failed: errno %d\n", errno);
    return 1;
}
