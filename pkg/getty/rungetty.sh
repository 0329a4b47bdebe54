#!/bin/sh
# A shell on every console the kernel was given (each console= on its command line), started
# again whenever it exits. With INSECURE=false in the environment getty asks for a login
# instead of starting a root shell straight away.
consoles=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^console=\([^,]*\).*/\1/p')
[ -n "$consoles" ] || consoles=console
ttys=""
for tty in $consoles; do
  [ -c "/dev/$tty" ] && ttys="$ttys $tty"
done
[ -n "$ttys" ] || { echo "rungetty: none of the consoles ($consoles) is a device" >&2; exit 1; }
# One loop per console, run in parallel by xargs in the foreground. Started with `&`, a
# non-interactive shell would run them with SIGINT and SIGQUIT ignored, and every shell on
# the consoles would inherit that: Ctrl-C would stop nothing.
set -- $ttys
printf '%s\n' "$@" | exec xargs -n 1 -P "$#" /usr/bin/getty-loop.sh
