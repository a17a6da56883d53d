# shipshape RPM %post ($1: 1 = install, 2 = upgrade). Units are not enabled here:
# user data, packer or the operator enables the ones the host needs.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
