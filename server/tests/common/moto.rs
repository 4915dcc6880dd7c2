//! moto's S3 server for tests of s3:// pulls.

use std::path::Path;
use std::process::Command;

/// moto's S3 server on a free loopback port, stopped on drop.
pub struct Moto(std::process::Child, pub u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start(venv: &Path) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let server = Moto(child, port);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("moto_server did not listen on {port}");
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }

    /// The environment a pull needs to reach this server with test credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates `bucket` and uploads each local file to its key, with boto3 from the test virtualenv.
    pub fn upload(&self, venv: &Path, bucket: &str, files: &[(&Path, &str)]) {
        let uploads: String = files
            .iter()
            .map(|(path, key)| {
                format!("s3.upload_file({:?}, {bucket:?}, {key:?}); ", path.display().to_string())
            })
            .collect();
        let script = format!(
            "import boto3; s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test'); s3.create_bucket(Bucket={bucket:?}); {uploads}",
            self.endpoint()
        );
        let put = Command::new(venv.join("bin/python")).args(["-c", &script]).output().unwrap();
        assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    }
}
