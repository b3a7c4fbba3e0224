//! Unit tests of `control/engines.rs`.

use super::*;
use crate::worker::pool::PoolHandle;
use crate::worker::spec::WorkerSpec;

#[test]
fn model_must_be_a_gguf_file() {
    let dir = std::env::temp_dir().join(format!("sagellm-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(check_model(Path::new("")).is_err());
    assert!(check_model(&dir.join("missing.gguf"))
        .unwrap_err()
        .contains("does not exist"));
    assert!(check_model(&dir).unwrap_err().contains("not a file"));
    let text = dir.join("notes.gguf");
    std::fs::write(&text, "hello").unwrap();
    assert!(check_model(&text).unwrap_err().contains("not a GGUF file"));
    let gguf = dir.join("tiny.gguf");
    std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
    assert_eq!(check_model(&gguf).unwrap(), gguf);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reloads_keep_registered_engine_workers() {
    let engines = Engines::default();
    let pool = PoolHandle::new(vec![
        WorkerSpec::new("http://127.0.0.1:1", 1, vec![]).unwrap()
    ]);
    let engine = Arc::new(Engine {
        id: "engine-1".into(),
        tail: Arc::default(),
        run: Mutex::new(Run::new(LaunchSpec::example())),
    });
    engines.list.lock().push(engine.clone());
    let w = engines
        .register(
            &pool,
            &engine,
            0,
            WorkerSpec::new("http://127.0.0.1:2", 1, vec![]).unwrap(),
        )
        .unwrap();
    assert_eq!(engines.engine_of(w.uid).as_deref(), Some("engine-1"));
    assert_eq!(engine.info().port, 2);
    let (_, removed) = engines.replace_pool(
        &pool,
        vec![WorkerSpec::new("http://127.0.0.1:3", 1, vec![]).unwrap()],
    );
    assert_eq!(removed.len(), 1, "the configured worker 1 left");
    let now = pool.load();
    assert!(
        now.workers.iter().any(|x| x.uid == w.uid),
        "the engine stays"
    );
    assert_eq!(now.workers.len(), 2);
}
