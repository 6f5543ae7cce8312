//! Trains a small IKD run on a synthetic category (a seeded random teacher), serves it on
//! 127.0.0.1, scores one PNG over HTTP and shuts the service down gracefully.
//!
//! `cargo run --release -p ikd-serve --example serve_a_run`

use std::io::{Read, Write};

use ikd::{TeacherWeights, TrainConfig, TrainOptions};
use ikd_data::synthetic::{generate, SyntheticConfig, Texture};
use ikd_serve::{RunSpec, ServeConfig, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("ikd-serve-example-{}", std::process::id()));
    let data = work.join("data");
    let synthetic = SyntheticConfig {
        categories: vec![Texture::Wood],
        image_size: 64,
        n_train: 4,
        n_test_good: 1,
        n_test_defect: 1,
        seed: 0,
    };
    generate(&synthetic, &data)?;
    let config = TrainConfig {
        data_root: data.clone(),
        category: "wood".into(),
        backbone: "hrnet_w18_small".into(),
        teacher_weights: TeacherWeights::Random,
        image_size: 64,
        load_size: 64,
        epochs: 1,
        batch_size: 2,
        ..TrainConfig::default()
    };
    let run = work.join("wood");
    ikd::train(&config, &run, TrainOptions::default())?;
    let png = std::fs::read_dir(data.join("wood").join("test").join("good"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .ok_or("no test image")?;
    let png = std::fs::read(png)?;

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let spec = RunSpec::parse(&format!("wood={}", run.display()))?;
        let server = Server::bind(ServeConfig::new(vec![spec]), "127.0.0.1:0").await?;
        server.ready().await?; // loaded and warmed up
        let addr = server.local_addr();
        // A plain HTTP/1.1 request, as any client would send it.
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(addr)?;
            write!(
                s,
                "POST /v1/runs/wood/score HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                png.len()
            )?;
            s.write_all(&png)?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .await??;
        println!("{}", answer.lines().last().unwrap_or_default());
        server.shutdown().await?; // stop accepting, answer what is queued
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
