#!/bin/sh
# A shell on every console the kernel was given (each console= on its command line), started
# again whenever it exits. With INSECURE=false in the environment getty asks for a login
# instead of starting a root shell straight away.
# Interactive shells read this (PATH, prompt, the svc alias).
export ENV=/etc/profile
consoles=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^console=\([^,]*\).*/\1/p')
[ -n "$consoles" ] || consoles=console
if [ "${INSECURE:-true}" = "false" ]; then
  login=/bin/login
  nologin=""
else
  login=/bin/sh
  nologin=-n
fi
started=0
for tty in $consoles; do
  [ -c "/dev/$tty" ] || continue
  (
    while true; do
      setsid getty $nologin -l "$login" 0 "/dev/$tty" linux
      sleep 1
    done
  ) &
  started=$((started + 1))
done
[ "$started" -gt 0 ] || { echo "rungetty: none of the consoles ($consoles) is a device" >&2; exit 1; }
wait
