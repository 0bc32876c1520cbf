#!/bin/bash
exec > _scheduler-stdout.txt
exec 2> _scheduler-stderr.txt


'/work/main/.venv/bin/python3' '-m' 'sevenn.main.sevenn' 'train' 'input.yaml' '--log' 'log.sevenn'  > 'sevenn.out' 2>&1
