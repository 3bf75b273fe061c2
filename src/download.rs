//! `--download`: fetches MNIST, Fashion-MNIST or CIFAR-10 from their canonical locations with
//! `curl`, checks each file against its published MD5, and (CIFAR-10) unpacks it with `tar`.
//! Files already present with the right checksum are not fetched again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};

use crate::config::ImageDataset;

/// (file name, MD5) as published: torchvision's `datasets/mnist.py` for MNIST and Fashion-MNIST
/// (which match `../shared/data/MD5SUMS`), the CIFAR page for CIFAR-10's binary version.
const MNIST: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
];
const FASHION: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
];
const CIFAR: (&str, &str) = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530");

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const FASHION_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const CIFAR_URL: &str = "https://www.cs.toronto.edu/~kriz/";

/// The file's MD5 as lowercase hex.
pub fn md5_hex(path: &Path) -> Result<String> {
    let (mut file, _) = diffuse_fs::open(path)?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Makes `dir/name` hold the file with MD5 `md5`, fetching `base + name` when it does not.
fn fetch_file(base: &str, name: &str, md5: &str, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() && md5_hex(&path)? == md5 {
        eprintln!("{} is present and verified", path.display());
        return Ok(path);
    }
    let url = format!("{base}{name}");
    let tmp = dir.join(format!(".{name}.part"));
    eprintln!("downloading {url}");
    let status = Command::new("curl")
        .args(["-fL", "--retry", "2", "--connect-timeout", "20", "-o"])
        .arg(&tmp)
        .arg(&url)
        .status();
    let hint = format!(
        "download the files by hand into {} (for {url}: MD5 {md5}) and rerun without --download",
        dir.display()
    );
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let _ = std::fs::remove_file(&tmp);
            bail!("could not download {url} (curl {s}; is there network access?); {hint}");
        }
        Err(e) => bail!("could not run curl to download {url} ({e}); {hint}"),
    }
    let got = md5_hex(&tmp)?;
    if got != md5 {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{url} has MD5 {got}, expected {md5}; the download is corrupt or the file changed upstream"
        );
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Fetches `dataset` into `dir` (created if needed), verified.
pub fn fetch(dataset: ImageDataset, dir: &Path) -> Result<()> {
    let (base, files): (&str, &[(&str, &str)]) = match dataset {
        ImageDataset::Mnist => (MNIST_URL, &MNIST),
        ImageDataset::FashionMnist => (FASHION_URL, &FASHION),
        ImageDataset::Cifar10 => (CIFAR_URL, std::slice::from_ref(&CIFAR)),
        ImageDataset::Folder => bail!("--download does not apply to --dataset folder"),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, md5) in files {
        let path = fetch_file(base, name, md5, dir)?;
        if dataset == ImageDataset::Cifar10 && !dir.join("cifar-10-batches-bin").is_dir() {
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(&path)
                .arg("-C")
                .arg(dir)
                .status()
                .with_context(|| format!("cannot run tar to unpack {}", path.display()))?;
            if !status.success() {
                bail!("tar could not unpack {} ({status})", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_a_known_string() {
        let path = std::env::temp_dir().join(format!("diffuse-md5-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(md5_hex(&path).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        std::fs::remove_file(&path).unwrap();
    }
}
