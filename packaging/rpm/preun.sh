# shipshape RPM %preun ($1: 0 = erase, 1 = upgrade): on erase stop and disable units.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now shipshape.service shipshape-gc.timer shipshape-gc.service \
        shipshape-bootstrap.service shipshape-ecs-restart.path >/dev/null 2>&1 || :
fi
