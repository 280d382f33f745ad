# Who and where am I: the first moves of an intruder.
uname -a; id; whoami; hostname; cat /etc/os-release; ps aux > /dev/null 2>&1; ls -la / > /dev/null
