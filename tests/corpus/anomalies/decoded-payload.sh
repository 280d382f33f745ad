# A payload decoded and handed to a shell (here it only writes a file).
echo 'ZWNobyBvd25lZCA+IC93b3Jrc3BhY2UvLnAKY2F0IC93b3Jrc3BhY2UvLnAK' | base64 -d | sh
