# shipshape RPM %post ($1: 1 = install, 2 = upgrade). Creates the state directory
# (the daemon's StateDirectory= would too). Units are not enabled here: user data,
# packer or the operator enables the ones the host needs.
install -d -m 0700 /var/lib/shipshape
# The Docker credential helper is the same binary under another name.
ln -sf shipshape /usr/bin/docker-credential-shipshape
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
