# Reading through system configuration: credential and service discovery.
find /etc -maxdepth 2 -type f 2>/dev/null | head -300 | xargs cat > /dev/null 2>&1; true
