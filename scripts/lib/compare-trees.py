#!/usr/bin/env python3
"""Compares a tree applied by imprint with the same image applied by wimlib-imagex.

Everything must match (type, contents, times, hard-link groups, symlink targets relative to
each root), except that symlinks whose target leaves the tree exist only in wimlib's copy:
imprint lists those as not created instead of writing them. Exit 0 when they agree.
"""
import hashlib
import os
import sys


def walk(root):
    nodes, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if os.path.islink(full):
                target = os.readlink(full)
                nodes[rel] = ("link", target.replace(root, "<root>", 1) if target.startswith(root) else target)
            elif os.path.isdir(full):
                nodes[rel] = ("dir", st.st_mtime_ns)
            else:
                nodes[rel] = ("file", st.st_size, st.st_mtime_ns)
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
    for rel, node in list(nodes.items()):
        if node[0] == "file":
            with open(os.path.join(root, rel), "rb") as f:
                nodes[rel] = node + (hashlib.sha1(f.read()).hexdigest(),)
    return nodes, sorted(sorted(g) for g in inodes.values())


def leaves(root, rel, target):
    if target.startswith("<root>"):
        return False
    if os.path.isabs(target):
        return True
    depth = len(rel.split(os.sep)) - 1
    for part in target.split("/"):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return False


ours, theirs = sys.argv[1], sys.argv[2]
a, a_links = walk(ours)
b, b_links = walk(theirs)
skipped = {rel for rel, node in b.items() if node[0] == "link" and leaves(theirs, rel, node[1])}
problems = [rel for rel in sorted(set(a) | set(b)) if rel not in skipped and a.get(rel) != b.get(rel)]
problems += [rel for rel in skipped if rel in a]
if a_links != b_links:
    problems.append("hard-link groups differ")
for p in problems[:20]:
    print(f"differs: {p}: {a.get(p)} vs {b.get(p)}", file=sys.stderr)
print(f"{len(a)} entries compared; {len(skipped)} symlinks leaving the tree were (rightly) not created by imprint")
sys.exit(1 if problems else 0)
