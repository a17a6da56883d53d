# shipshape RPM %postun ($1: 0 = erase, 1 = upgrade): reload; on upgrade restart a
# running daemon onto the new binary.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart shipshape.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rm -f /usr/bin/docker-credential-shipshape
fi
