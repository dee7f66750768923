# ee-host launch "agent" (tdx mode): nothing was started.
# Launch config, written to @DIR@/state/vms/agent/launch.json and passed as fw_cfg opt/easyenclave/launch.json:
# {"agent_port":8443,"endpoint":"https://demo.example.com","forwarded_ports":[{"guest_port":80,"host_port":28080,"protocol":"tcp"}],"github_api_url":"https://api.github.com","image_id":"agent-v1","network":{"address":"192.168.122.50/24","dns":["192.168.122.1"],"gateway":"192.168.122.1","mode":"static"},"repo":"easy-enclave/demo","tsm":{"legacy_extend_ioctl":false},"version":1}
qemu-system-x86_64 \
    -name agent \
    -nodefaults \
    -no-user-config \
    -machine q35,kernel-irqchip=split,confidential-guest-support=tdx0,hpet=off \
    -accel kvm \
    -cpu host \
    -smp 2 \
    -m 4096M \
    -object '{"qom-type":"tdx-guest","id":"tdx0","quote-generation-socket":{"type":"vsock","cid":"2","port":"4050"},"sept-ve-disable":true}' \
    -bios @DIR@/firmware/tdvf.fd \
    -kernel @DIR@/image/vmlinuz \
    -initrd @DIR@/image/initrd.img \
    -append 'console=ttyS0 panic=-1 ee.image=agent-v1' \
    -fw_cfg name=opt/easyenclave/launch.json,file=@DIR@/state/vms/agent/launch.json \
    -chardev file,id=serial0,path=@DIR@/state/vms/agent/serial.log \
    -serial chardev:serial0 \
    -netdev bridge,id=net0,br=virbr0 \
    -device virtio-net-pci,netdev=net0,mac=52:54:00:05:68:ce \
    -device vhost-vsock-pci,guest-cid=3 \
    -qmp unix:@DIR@/state/vms/agent/qmp.sock,server=on,wait=off \
    -display none \
    -no-reboot
# Port forwards of the bridged VM:
iptables -t nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 28443 -m comment --comment ee-host:agent -j DNAT --to-destination 192.168.122.50:8443
iptables -t nat -A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 28443 -m comment --comment ee-host:agent -j DNAT --to-destination 192.168.122.50:8443
iptables -t filter -I FORWARD -p tcp -d 192.168.122.50 -m tcp --dport 8443 -m comment --comment ee-host:agent -j ACCEPT
iptables -t nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 28080 -m comment --comment ee-host:agent -j DNAT --to-destination 192.168.122.50:80
iptables -t nat -A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 28080 -m comment --comment ee-host:agent -j DNAT --to-destination 192.168.122.50:80
iptables -t filter -I FORWARD -p tcp -d 192.168.122.50 -m tcp --dport 80 -m comment --comment ee-host:agent -j ACCEPT
