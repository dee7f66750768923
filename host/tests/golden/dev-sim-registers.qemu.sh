# ee-host launch "agent" (dev mode): nothing was started.
# Launch config, written to @DIR@/state/vms/agent/launch.json and passed as fw_cfg opt/easyenclave/launch.json:
# {"agent_port":8443,"endpoint":"https://demo.example.com","forwarded_ports":[{"guest_port":80,"host_port":28080,"protocol":"tcp"}],"github_api_url":"https://api.github.com","image_id":"agent-v1","network":{"mode":"dhcp"},"repo":"easy-enclave/demo","tsm":{"legacy_extend_ioctl":false},"version":1}
# Simulated TD registers (allowlist entry "2cpu-4g"), written to @DIR@/state/vms/agent/sim-registers.json and passed as fw_cfg opt/easyenclave/sim-registers.json:
# {"entry":"2cpu-4g","mrtd":"101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010","rtmr0":"202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020","rtmr1":"303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030","rtmr2":"404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040404040","version":1}
qemu-system-x86_64 \
    -name agent \
    -nodefaults \
    -no-user-config \
    -machine q35 \
    -accel tcg \
    -cpu max \
    -smp 1 \
    -m 4096M \
    -kernel @DIR@/image/vmlinuz \
    -initrd @DIR@/image/initrd.img \
    -append 'console=ttyS0 panic=-1 ee.image=agent-v1' \
    -fw_cfg name=opt/easyenclave/launch.json,file=@DIR@/state/vms/agent/launch.json \
    -fw_cfg name=opt/easyenclave/sim-registers.json,file=@DIR@/state/vms/agent/sim-registers.json \
    -chardev file,id=serial0,path=@DIR@/state/vms/agent/serial.log \
    -serial chardev:serial0 \
    -netdev user,id=net0,hostfwd=tcp:0.0.0.0:28443-:8443,hostfwd=tcp:0.0.0.0:28080-:80 \
    -device virtio-net-pci,netdev=net0,mac=52:54:00:05:68:ce \
    -qmp unix:@DIR@/state/vms/agent/qmp.sock,server=on,wait=off \
    -display none \
    -no-reboot
