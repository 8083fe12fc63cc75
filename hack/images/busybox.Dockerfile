# docker.io/library/busybox:latest for the tests' helper pods (`sh -c ...`, `sleep`, `true`,
# `cat`, `dd`), made from Debian's packages since no public registry is reachable here.
# Debian's minbase already has sh, coreutils and dd; busybox adds its small tools (wget,
# nc, ...) under /usr/local/bin, not shadowing coreutils.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
 && for applet in $(busybox --list); do \
      command -v "$applet" >/dev/null || ln -s /bin/busybox "/usr/local/bin/$applet"; \
    done
CMD ["sh"]
