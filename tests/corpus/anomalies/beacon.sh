# A connection to a port and address the job never used (refused: the sandbox has no network).
python3 -c 'import socket; s = socket.socket(); s.settimeout(1); print(s.connect_ex(("192.0.2.10", 8443)))'
