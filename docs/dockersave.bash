# bash completion for dockersave. Made from the --help text by `cargo test docs_are_current`.
_dockersave() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --cacert|--images-from|-o|--output|--verify-key|--flatten|--initramfs|--push) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --cache-dir|--working-dir|--certs-d|--rootfs) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W 'docker legacy' -- "$cur")); return ;;
        --user|--password|--proxy|--platform|--arch|--cache-max|--retries|--timeout|--layers-dir|--tarname|--have|--mirror|--init|--layer|--artifact|--artifact-type|--image|--copy-to) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '--insecure --cacert --user --password --password-stdin --ilogin --proxy --platform --arch --images-from --cache-dir --cache-max --retries --timeout --working-dir --layers-dir -o --output --tarname --format --compressed --have --gzip --xz --gunzip --no-tar --no-rm --mirror --no-mirror --certs-d --verify-key --rootfs --force --git --flatten --initramfs --init --layer --registry-format --artifact --artifact-type --push --image --all --copy-to --with-referrers --tags --sha --metadata --pretty --referrers --platforms -q --quiet -v --verbose -h --help -V --version' -- "$cur"))
    fi
}
complete -F _dockersave dockersave
